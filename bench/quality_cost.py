"""What the quality block costs: warm in-process embeds of the labelled photos
with and without quality, interleaved photo by photo (issue: decisions).

    .venv/bin/python -m bench.quality_cost [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from face_recognition_service.engine import FaceEngine, FaceOptions
from face_recognition_service.engine.quality import assess
from face_recognition_service.imaging import decode_image
from face_recognition_service.provision import provision

from .common import DEFAULT_PHOTOS, load_photos, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        engine = FaceEngine.load(provision("buffalo_sc", Path(tmp)), threads=2)
        engine.warm_up()
        images = [decode_image(p.data, 40_000_000) for p in load_photos(DEFAULT_PHOTOS)]
        plain: list[float] = []
        with_quality: list[float] = []
        quality_only: list[float] = []
        for _ in range(args.rounds):
            for image in images:
                for flag, samples in ((False, plain), (True, with_quality)):
                    start = time.perf_counter()
                    faces = engine.embed_faces(image, FaceOptions(quality=flag))
                    samples.append(time.perf_counter() - start)
                # The assessment alone, on what the pipeline already has.
                face = faces[0]
                assert face.landmarks is not None
                crop = engine.align(image, face.landmarks)
                start = time.perf_counter()
                assess(face.landmarks, face.box, image.shape, face.detection_score, crop, 20.0)
                quality_only.append(time.perf_counter() - start)
    out: dict[str, object] = {
        "embed": summary(plain),
        "embed_with_quality": summary(with_quality),
        "assess_only": summary(quality_only),
        "added_ms_median": round(summary(with_quality)["median_ms"] - summary(plain)["median_ms"], 2),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
