"""Which packs the service knows and which two of their files it runs.

A pack is one of InsightFace's released ``buffalo_*`` zips; the service runs two
of its networks, the SCRFD detector and the ArcFace recogniser. Standard
library only (the image build imports it before the service's code is copied).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelPack:
    name: str
    detector: str
    recognizer: str

    @property
    def files(self) -> tuple[str, str]:
        return (self.detector, self.recognizer)


# File names inside InsightFace's released packs (the zip files of its model zoo).
MODEL_PACKS: dict[str, ModelPack] = {
    pack.name: pack
    for pack in (
        ModelPack("buffalo_l", "det_10g.onnx", "w600k_r50.onnx"),
        ModelPack("buffalo_m", "det_2.5g.onnx", "w600k_r50.onnx"),
        ModelPack("buffalo_s", "det_500m.onnx", "w600k_mbf.onnx"),
        ModelPack("buffalo_sc", "det_500m.onnx", "w600k_mbf.onnx"),
    )
}


class PackError(RuntimeError):
    """A pack is unknown, or its files could not be found, fetched or verified."""


def get_pack(name: str) -> ModelPack:
    pack = MODEL_PACKS.get(name)
    if pack is None:
        raise PackError(f"unknown model pack {name!r}; known packs: {', '.join(sorted(MODEL_PACKS))}")
    return pack
