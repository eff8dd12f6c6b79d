"""Peak memory of the largest /embed/batch the defaults allow: MAX_BATCH_IMAGES
(16) photos, each a 12 MP phone-size JPEG (4.5 MB limit: the Lambda template's
MAX_IMAGE_SIZE), against one /embed of one such photo; a fresh server each,
peak RSS (VmHWM) read after the request.

    .venv/bin/python -m bench.batch_memory
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from face_recognition_service.provision import provision
from face_recognition_service.testing import data_uri, embed_body, phone_size_jpeg

from .common import DEFAULT_PHOTOS, load_photos, peak_of_one_request


def main() -> int:
    photos = [phone_size_jpeg(p.data, 12) for p in load_photos(DEFAULT_PHOTOS)[:16]]
    batch = json.dumps(
        {"images": [{"id": str(i), "image": data_uri(d)} for i, d in enumerate(photos)]}
    ).encode()
    out: dict[str, object] = {"batch_images": len(photos), "batch_body_mb": round(len(batch) / 1e6, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        provision("buffalo_sc", Path(tmp))
        for name, path, body in (
            ("one_embed", "/api/v1/embed", embed_body(photos[0])),
            ("batch_16", "/api/v1/embed/batch", batch),
        ):
            measured = peak_of_one_request(Path(tmp), path, body, MAX_IMAGE_SIZE=str(8 * 2**20))
            out[name] = {"idle_peak_mb": measured["idle_peak_mb"], "peak_mb": measured["peak_mb"]}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
