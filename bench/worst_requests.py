"""Peak memory of the worst request each route admits (issue: Reliability III),
each on a fresh server (buffalo_sc, defaults), peak RSS (VmHWM) read after it:

- embed_100_faces: a 121-face grid (3.5 MB JPEG) with face_selection all,
  capped at 100 faces;
- batch_256_faces: three such grids in one batch, capped at 256 faces;
- verify_10k_short_ints / compare_10k_short_ints: 10,000 references of 512
  short integers (10.5 MB), the request that peaked at 682 MB before vectors
  were read as arrays;
- compare_32mib_floats: the /compare body limit filled with full-precision
  float-list references (~2,900);
- identify_10k_refs_100k: /identify by embedding against a 100,000-person
  gallery (exact search) with 10,000 inline references of short integers and
  10,000 exclude_ids;
- identify_100_faces_100k: the 121-face grid with face_selection all against
  the same gallery (100 faces searched and assigned);
- verify_4096d_44mb / verify_4096d_8m_values: references of 4,096 short
  integers, 44.7 MB (22 million values: refused before parsing) and 16 MB
  (8 million values, just under the limit: refused at the first array), both 422.

    .venv/bin/python -m bench.worst_requests
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from tests.support.galleries import grid_jpeg

from face_recognition_service.provision import provision
from face_recognition_service.testing import data_uri

from .common import peak_of_one_request


def short_int_references(count: int, probe_key: str, refs_key: str, size: int = 512) -> bytes:
    one = b'{"id":"u","embedding":[' + b",".join([b"0"] * (size - 1) + [b"1"]) + b"]}"
    probe = b"[" + b",".join([b"1"] * 512) + b"]"
    return (
        b'{"'
        + probe_key.encode()
        + b'":'
        + probe
        + b',"'
        + refs_key.encode()
        + b'":['
        + b",".join([one] * count)
        + b"]}"
    )


def float_references(limit: int) -> bytes:
    rng = np.random.default_rng(3)
    one = json.dumps({"id": "u", "embedding": rng.normal(size=512).tolist()})
    count = (limit - 20_000) // (len(one) + 1)
    refs = ",".join([one] * count)
    return f'{{"query_embedding": {json.dumps(rng.normal(size=512).tolist())}, "reference_embeddings": [{refs}]}}'.encode()


def write_gallery(path: Path, count: int) -> None:
    """A snapshot of ``count`` random people (the model tag of buffalo_sc as provisioned)."""
    from face_recognition_service.gallery.format import write_snapshot
    from face_recognition_service.models import get_pack, model_tag

    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((count, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tag = model_tag(path.parent.parent / "buffalo_sc", get_pack("buffalo_sc"))
    write_snapshot(
        path, model=tag, ids=[f"person-{i}" for i in range(count)], vectors=vectors, built_at="bench"
    )


def main() -> int:
    grid = data_uri(grid_jpeg())
    cases = {
        "embed_100_faces": ("/api/v1/embed", json.dumps({"image": grid, "face_selection": "all"}).encode()),
        "batch_256_faces": (
            "/api/v1/embed/batch",
            json.dumps(
                {"images": [{"id": str(i), "image": grid} for i in range(3)], "face_selection": "all"}
            ).encode(),
        ),
        "verify_10k_short_ints": ("/api/v1/verify", short_int_references(10_000, "embedding", "references")),
        "compare_10k_short_ints": (
            "/api/v1/compare",
            short_int_references(10_000, "query_embedding", "reference_embeddings"),
        ),
        "compare_32mib_floats": ("/api/v1/compare", float_references(32 * 1024 * 1024)),
    }
    references = short_int_references(10_000, "embedding", "references")
    excluded = json.dumps([f"person-{i}" for i in range(10_000)]).encode()
    cases["identify_10k_refs_100k"] = (
        "/api/v1/identify",
        references[:-1] + b',"gallery":"staff.frg","exclude_ids":' + excluded + b"}",
    )
    refused = {
        "verify_4096d_44mb": ("/api/v1/verify", short_int_references(5_450, "embedding", "references", 4096)),
        "verify_4096d_8m_values": (
            "/api/v1/verify",
            short_int_references(1_950, "embedding", "references", 4096),
        ),
    }
    cases["identify_100_faces_100k"] = (
        "/api/v1/identify",
        json.dumps({"image": grid, "face_selection": "all", "gallery": "staff.frg"}).encode(),
    )
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        provision("buffalo_sc", Path(tmp))
        galleries = Path(tmp) / "galleries"
        galleries.mkdir()
        write_gallery(galleries / "staff.frg", 100_000)
        for name, (path, body) in {**cases, **refused}.items():
            expect = 422 if name in refused else 200
            peak = peak_of_one_request(Path(tmp), path, body, expect, GALLERY_DIR=str(galleries))
            out[name] = {"body_mb": round(len(body) / 1e6, 1), **peak}
            print(name, out[name], file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
