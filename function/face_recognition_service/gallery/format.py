"""The gallery snapshot file: one file, memory-mapped where it is read.

    offset 0    magic  b"FRGALLRY"                      8 bytes
    offset 8    header length H, little-endian uint64     8 bytes
    offset 16   header: UTF-8 JSON (the fields below)     H bytes
    (zero padding to a multiple of 64)
    vectors     count x dim little-endian float32, unit length, row i is ids[i]
    ids         UTF-8 JSON array of count strings
    index       optional (above 100,000 vectors): a product-quantized index over
                the same rows (gallery/search.py): a rotation R, dim x dim
                little-endian float32 (the codes are of R @ row); the
                centroids, M pieces x 16 x dim / M float32; then each row's
                code, M x 4 bits (piece j's centroid number in byte j // 2 of
                the row's M / 2 bytes, the low four bits first)

Header fields: ``format`` (1), ``model`` (the model tag of every vector),
``count``, ``dim``, ``built_at`` (ISO 8601, UTC), ``hash`` (``sha256:`` of the
model tag, the ids and the vectors: the gallery's content, the same for two
builds of the same content), and the ``vectors``, ``ids`` and ``index``
sections' ``offset`` and ``length`` in bytes (``index`` also names its
``kind``: ``exact`` for none, ``pq`` with its ``subquantizers`` (M), ``bits``
(4) and the ``sha256`` of its bytes; ``usearch``, written by 0.3.0, and
``binary``, written by development builds after it, are read and searched exactly).

A snapshot is checked before it is searched: magic, header, every section
inside the file, the sizes agreeing with count and dim, and the hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import struct
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from ..errors import ErrorCode, ServiceError

MAGIC = b"FRGALLRY"
FORMAT_VERSION = 1
ALIGN = 64
MAX_HEADER_BYTES = 1 << 20


def invalid(detail: str) -> ServiceError:
    return ServiceError(ErrorCode.INVALID_GALLERY, "The gallery snapshot cannot be read.", detail)


def _digest_start(model: str, ids_blob: bytes) -> hashlib._Hash:
    digest = hashlib.sha256()
    for part in (model.encode(), ids_blob):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest


def content_hash(model: str, ids_blob: bytes, vectors: np.ndarray) -> str:
    digest = _digest_start(model, ids_blob)
    digest.update(_bytes_of(vectors))
    return "sha256:" + digest.hexdigest()


def _file_hash(path: Path, model: str, ids_blob: bytes, offset: int, length: int) -> str:
    """``content_hash`` of the vectors read from the file (not through the
    mapping: pages read here stay in the page cache, not in the process)."""
    return "sha256:" + _digest_file(_digest_start(model, ids_blob), path, offset, length)


def _digest_file(digest: hashlib._Hash, path: Path, offset: int, length: int) -> str:
    """``digest`` fed ``length`` bytes of the file from ``offset``; its hex value."""
    with path.open("rb") as stream:
        stream.seek(offset)
        while length > 0:
            chunk = stream.read(min(length, 8 << 20))
            if not chunk:
                break
            digest.update(chunk)
            length -= len(chunk)
    return digest.hexdigest()


def _bytes_of(vectors: np.ndarray) -> memoryview:
    """The float32 rows as bytes, without a copy."""
    array: Any = np.ascontiguousarray(vectors, dtype="<f4")
    return memoryview(array).cast("B")


def _pad(length: int) -> int:
    return -length % ALIGN


def write_snapshot(
    path: Path,
    *,
    model: str,
    ids: list[str],
    vectors: np.ndarray,
    built_at: str,
    index_blob: bytes | None = None,
    index_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the file (to a temporary name, then renamed: a reader never sees
    half a snapshot) and return its header."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    count, dim = vectors.shape
    ids_blob = orjson.dumps(ids)
    header: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "model": model,
        "count": count,
        "dim": dim,
        "built_at": built_at,
        "hash": content_hash(model, ids_blob, vectors),
    }
    # Offsets depend on the header's own length: lay it out with room to spare.
    sections = {"vectors": vectors.nbytes, "ids": len(ids_blob), "index": len(index_blob or b"")}
    provisional = orjson.dumps({**header, **{k: {"offset": 0, "length": 0} for k in sections}})
    start = 16 + len(provisional) + 256
    start += _pad(start)
    offset = start
    for name, length in sections.items():
        header[name] = {"offset": offset, "length": length}
        offset += length + _pad(length)
    header["index"].update(index_info or {"kind": "exact"})
    encoded = orjson.dumps(header)
    assert 16 + len(encoded) <= start
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as out:
        out.write(MAGIC + struct.pack("<Q", len(encoded)) + encoded)
        out.write(b"\0" * (start - 16 - len(encoded)))
        for blob in (_bytes_of(vectors), ids_blob, index_blob or b""):
            out.write(blob)
            out.write(b"\0" * _pad(len(blob)))
    tmp.replace(path)
    return header


def read_header(stream: BinaryIO, file_size: int) -> dict[str, Any]:
    start = stream.read(16)
    if len(start) < 16 or start[:8] != MAGIC:
        raise invalid("Not a gallery snapshot (the file does not start with FRGALLRY).")
    (length,) = struct.unpack("<Q", start[8:])
    if length > MAX_HEADER_BYTES or 16 + length > file_size:
        raise invalid("The snapshot's header is truncated or too long.")
    try:
        header = orjson.loads(stream.read(length))
    except orjson.JSONDecodeError:
        raise invalid("The snapshot's header is not valid JSON.") from None
    _check_header(header, file_size)
    return dict(header)


def _check_header(header: object, file_size: int) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise invalid(f"Unsupported snapshot format (this service reads format {FORMAT_VERSION}).")
    count, dim = header.get("count"), header.get("dim")
    if not isinstance(count, int) or not isinstance(dim, int) or count < 1 or dim < 1:
        raise invalid("The snapshot's count or dim is missing.")
    if not isinstance(header.get("model"), str) or not isinstance(header.get("hash"), str):
        raise invalid("The snapshot's model tag or hash is missing.")
    for name in ("vectors", "ids", "index"):
        section = header.get(name)
        if not isinstance(section, dict):
            raise invalid(f"The snapshot has no {name} section.")
        offset, length = section.get("offset"), section.get("length")
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 16 or length < 0:
            raise invalid(f"The snapshot's {name} section is malformed.")
        if offset + length > file_size:
            raise invalid(f"The snapshot is truncated (its {name} section ends past the file's end).")
    if header["vectors"]["length"] != count * dim * 4:
        raise invalid("The snapshot's vectors section does not hold count x dim float32 values.")


@dataclass
class Snapshot:
    """An open snapshot: its header, the memory-mapped vectors, the ids and
    (for large galleries) the memory-mapped index bytes."""

    path: Path
    header: dict[str, Any]
    vectors: np.ndarray  # (count, dim) float32, a view of the mapping
    ids: list[str]
    index_bytes: np.ndarray | None
    _mapping: mmap.mmap
    _file: BinaryIO  # unbuffered: read_rows reads through it

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Those rows of the vectors, read from the file (pread), not through
        the mapping. The kernel maps 64 KiB around each page fault, so a few
        hundred scattered rows a search, read through the mapping, would soon
        have the whole file counted in the process's memory (2 GB at 1,000,000
        vectors); read this way they cost the page cache only."""
        dim = int(self.header["dim"])
        size, base = dim * 4, int(self.header["vectors"]["offset"])
        out: Any = np.empty((len(rows), dim), "<f4")
        view = memoryview(out).cast("B")
        fd = self._file.fileno()
        for i, row in enumerate(rows.tolist()):
            if os.preadv(fd, [view[i * size : (i + 1) * size]], base + row * size) != size:
                raise invalid("The snapshot file changed while it was read.")
        rows_read: np.ndarray = out
        return rows_read

    @property
    def model(self) -> str:
        return str(self.header["model"])

    @property
    def count(self) -> int:
        return int(self.header["count"])

    @property
    def hash(self) -> str:
        return str(self.header["hash"])

    def close(self) -> None:
        # Views of the mapping may still be alive in a request that is finishing:
        # the mapping then closes when the last of them goes.
        with contextlib.suppress(BufferError):
            self._mapping.close()
        # The file stays open while a request still holds this snapshot (its
        # read_rows would fail): it is closed when the last reference goes.


def open_snapshot(path: Path, *, verify: bool = True) -> Snapshot:
    """Map the file and check it (INVALID_GALLERY when it is not a whole, intact
    snapshot). ``verify=False`` leaves out the hashes: the caller then runs
    ``verify_snapshot`` (the gallery cache, beside building the search)."""
    stream = path.open("rb", buffering=0)  # kept open for read_rows; closed with the snapshot
    try:
        snapshot = _open(path, stream)
        if verify:
            verify_snapshot(snapshot)
        return snapshot
    except BaseException:
        stream.close()
        raise


def verify_snapshot(snapshot: Snapshot) -> None:
    """The content (model tag, ids, vectors) and the index against their hashes,
    read from the file (not through the mapping: pages read here stay in the
    page cache, not in the process)."""
    header, vectors = snapshot.header, snapshot.header["vectors"]
    ids = _section(snapshot._mapping, header["ids"])
    if (
        _file_hash(snapshot.path, header["model"], ids, vectors["offset"], vectors["length"])
        != header["hash"]
    ):
        raise invalid("The snapshot's content does not match its hash (a damaged file).")
    index = header["index"]
    if index.get("kind") == "pq":
        digest = _digest_file(hashlib.sha256(), snapshot.path, index["offset"], index["length"])
        if digest != index.get("sha256"):
            raise invalid("The snapshot's index does not match its hash (a damaged file).")


def _section(mapping: mmap.mmap, section: dict[str, int]) -> bytes:
    """A section's bytes, as the header places them."""
    return mapping[section["offset"] : section["offset"] + section["length"]]


def _open(path: Path, stream: BinaryIO) -> Snapshot:
    size = os.fstat(stream.fileno()).st_size
    header = read_header(stream, size)
    mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    count, dim = header["count"], header["dim"]
    vectors = np.frombuffer(mapping, dtype="<f4", count=count * dim, offset=header["vectors"]["offset"])
    vectors = vectors.reshape(count, dim)
    try:
        ids = orjson.loads(_section(mapping, header["ids"]))
    except orjson.JSONDecodeError:
        raise invalid("The snapshot's ids are not valid JSON.") from None
    # set(map(type, ...)): the check at C speed (a generator of isinstance took 0.55 s at 1,000,000)
    if not isinstance(ids, list) or len(ids) != count or not set(map(type, ids)) <= {str}:
        raise invalid("The snapshot's ids do not match its count.")
    index_bytes = _index_bytes(header["index"], mapping)
    snapshot = Snapshot(path, header, vectors, ids, index_bytes, mapping, stream)
    weakref.finalize(snapshot, stream.close)  # the file closes with the last reference
    return snapshot


def _index_bytes(index: dict[str, Any], mapping: mmap.mmap) -> np.ndarray | None:
    kind = index.get("kind")
    if kind in ("exact", "usearch", "binary"):
        return None  # indexes of earlier builds, no longer used (gallery/search.py)
    if kind != "pq" or not index["length"]:
        raise invalid("The snapshot names an index kind this service does not know.")
    return np.frombuffer(mapping, dtype=np.uint8, count=index["length"], offset=index["offset"])
