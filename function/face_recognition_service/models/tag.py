"""The model tag every embedding carries: which recogniser, byte for byte.

Standard library only. The tag is ``<pack>/<recogniser>@<first 8 hex of its
SHA-256>``, e.g. ``buffalo_sc/w600k_mbf@5e4b4c5a``: two deployments that give
the same tag give comparable embeddings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from .catalogue import ModelPack


def file_digest(path: Path) -> str:
    """SHA-256 of a model file, cached beside it by size and modification time.

    Hashing w600k_r50 (166 MB) costs ~0.3 s: paid once, at provisioning or image
    build time, when the cache is written; a read-only image then reads it back.
    A changed file (size or mtime) is hashed again.
    """
    stat = path.stat()
    cache = path.with_name(f".{path.name}.sha256.json")
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        cached = json.loads(cache.read_text())
        if {k: cached.get(k) for k in key} == key and isinstance(cached.get("sha256"), str):
            return str(cached["sha256"])
    except (OSError, ValueError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with contextlib.suppress(OSError):  # a read-only model folder: hash again next start
        cache.write_text(json.dumps({**key, "sha256": value}))
    return value


def model_tag(pack_dir: Path, pack: ModelPack) -> str:
    """``<pack>/<recogniser>@<first 8 hex of its SHA-256>``, e.g. buffalo_sc/w600k_mbf@5e4b4c5a."""
    recognizer = pack_dir / pack.recognizer
    return f"{pack.name}/{recognizer.stem}@{file_digest(recognizer)[:8]}"
