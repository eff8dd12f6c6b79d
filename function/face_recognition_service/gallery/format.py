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
inside the file, the sizes agreeing with count and dim, the hash, and every
row finite and of unit length.

The service searches only its own private copy of a snapshot (``private_copy``:
a file in GALLERY_CACHE_DIR with no name, which nobody else can open, truncate
or rewrite), never the caller's file where it lies: a caller rewriting that
file in place (``cp``, ``>``, ``rsync --inplace``) can then neither crash the
process (a mapped page that a truncation removed is SIGBUS) nor mix one
version's ids with another's vectors.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import re
import stat
import struct
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard

import numpy as np
import orjson

from ..errors import ErrorCode, ServiceError
from ..matching import EMBEDDING_SIZE

MAGIC = b"FRGALLRY"
FORMAT_VERSION = 1
ALIGN = 64
MAX_HEADER_BYTES = 1 << 20
# A model tag as the engine writes it: <pack>/<recogniser>@<8 hex>.
MODEL_TAG = re.compile(r"[A-Za-z0-9_.-]{1,64}/[A-Za-z0-9_.-]{1,64}@[0-9a-f]{8}")
# How far a stored row's length may be from 1 (the builder writes float32 unit rows).
UNIT_TOLERANCE = 1e-3
# Bytes read at a time when a snapshot is copied, hashed and checked.
CHUNK = 8 << 20
FICLONE = 0x40049409  # linux/fs.h: share the source's blocks (copy on write) where the filesystem can


def invalid(detail: str) -> ServiceError:
    return ServiceError(ErrorCode.INVALID_GALLERY, "The gallery snapshot cannot be read.", detail)


def storage_full(detail: str) -> ServiceError:
    """GALLERY_CACHE_DIR has no room for the copy the service searches."""
    return ServiceError(ErrorCode.STORAGE_FULL, "The service has no room to cache the gallery.", detail)


def storage_unavailable(detail: str) -> ServiceError:
    """The storage behind the service failed (not the request, not the snapshot)."""
    return ServiceError(ErrorCode.STORAGE_UNAVAILABLE, "The gallery storage could not be read.", detail)


def storage_error(exc: OSError, doing: str) -> ServiceError:
    """A failure of GALLERY_CACHE_DIR while ``doing``: full, or unavailable."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return storage_full(f"GALLERY_CACHE_DIR has no room while {doing}.")
    return storage_unavailable(
        f"GALLERY_CACHE_DIR failed while {doing} ({errno.errorcode.get(exc.errno or 0, 'error')})."
    )


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


def _digest_fd(digest: hashlib._Hash, fd: int, offset: int, length: int, rows_of: int = 0) -> str:
    """``digest`` fed ``length`` bytes of the file from ``offset`` (pread, not
    through the mapping: pages read here stay in the page cache, not in the
    process); its hex value. With ``rows_of`` (a row's float32 count), every
    row read is also checked to be finite and of unit length."""
    step = CHUNK - CHUNK % (rows_of * 4) if rows_of else CHUNK
    while length > 0:
        chunk = os.pread(fd, min(length, step), offset)
        if not chunk:
            raise invalid("The snapshot is truncated.")
        digest.update(chunk)
        if rows_of:
            _check_rows(np.frombuffer(chunk, "<f4").reshape(-1, rows_of))
        offset, length = offset + len(chunk), length - len(chunk)
    return digest.hexdigest()


def _check_rows(rows: np.ndarray) -> None:
    """Rows a search may return: finite, unit length (a similarity is then a cosine)."""
    if not np.isfinite(rows).all():
        raise invalid("The snapshot holds NaN or infinite values.")
    norms = np.einsum("ij,ij->i", rows, rows)
    if np.abs(norms - 1.0).max(initial=0.0) > 2 * UNIT_TOLERANCE:
        raise invalid(
            "The snapshot holds rows that are not of unit length (build it with the service's builder)."
        )


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


def _is_int(value: object) -> TypeGuard[int]:
    return type(value) is int  # not bool: JSON's true is not a count


def _check_header(header: object, file_size: int) -> None:
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise invalid(f"Unsupported snapshot format (this service reads format {FORMAT_VERSION}).")
    count, dim = header.get("count"), header.get("dim")
    if not _is_int(count) or not _is_int(dim) or count < 1 or dim < 1:
        raise invalid("The snapshot's count or dim is missing.")
    if dim != EMBEDDING_SIZE:
        raise invalid(
            f"The snapshot's vectors have {dim} values; this service's embeddings have {EMBEDDING_SIZE}."
        )
    model = header.get("model")
    if (
        not isinstance(model, str)
        or not MODEL_TAG.fullmatch(model)
        or not isinstance(header.get("hash"), str)
    ):
        raise invalid("The snapshot's model tag or hash is missing or malformed.")
    for name in ("vectors", "ids", "index"):
        section = header.get(name)
        if not isinstance(section, dict):
            raise invalid(f"The snapshot has no {name} section.")
        offset, length = section.get("offset"), section.get("length")
        if not _is_int(offset) or not _is_int(length) or offset < 16 or length < 0:
            raise invalid(f"The snapshot's {name} section is malformed.")
        if offset + length > file_size:
            raise invalid(f"The snapshot is truncated (its {name} section ends past the file's end).")
    if header["vectors"]["length"] != count * dim * 4 or header["vectors"]["offset"] % 4:
        raise invalid("The snapshot's vectors section does not hold count x dim float32 values.")


@dataclass
class Snapshot:
    """An open snapshot: its header, the memory-mapped vectors, the ids and
    (for large galleries) the memory-mapped index bytes. ``name`` is what the
    messages call it; the file is the service's own copy (``private_copy``)."""

    name: str
    header: dict[str, Any]
    vectors: np.ndarray  # (count, dim) float32, a view of the mapping
    ids: list[str]
    index_bytes: np.ndarray | None
    _mapping: mmap.mmap
    _file: BinaryIO  # unbuffered: read_rows and the checks read through it

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


def open_snapshot(source: Path | BinaryIO, *, verify: bool = True, name: str | None = None) -> Snapshot:
    """Map the file and check it (INVALID_GALLERY when it is not a whole, intact
    snapshot). ``source`` is a path (the builder's and ``inspect``'s own files)
    or an open unbuffered file (the cache's private copy), which the snapshot
    then owns. ``verify=False`` leaves out the hashes and the rows' check: the
    caller then runs ``verify_snapshot`` (the cache, beside building the search)."""
    if isinstance(source, Path):
        name = name or source.name
        stream: BinaryIO = source.open("rb", buffering=0)  # kept open for read_rows; closed with the snapshot
    else:
        stream = source
    try:
        snapshot = _open(name or "snapshot", stream)
        if verify:
            verify_snapshot(snapshot)
        return snapshot
    except BaseException:
        stream.close()
        raise


def verify_snapshot(snapshot: Snapshot) -> None:
    """The content (model tag, ids, vectors) and the index against their hashes,
    and every row finite and of unit length, read from the file."""
    header, vectors = snapshot.header, snapshot.header["vectors"]
    fd = snapshot._file.fileno()
    ids = _section(snapshot._mapping, header["ids"])
    digest = _digest_start(header["model"], ids)
    content = _digest_fd(digest, fd, vectors["offset"], vectors["length"], rows_of=int(header["dim"]))
    if "sha256:" + content != header["hash"]:
        raise invalid("The snapshot's content does not match its hash (a damaged file).")
    index = header["index"]
    pq = index.get("kind") == "pq"
    if pq and _digest_fd(hashlib.sha256(), fd, index["offset"], index["length"]) != index.get("sha256"):
        raise invalid("The snapshot's index does not match its hash (a damaged file).")


def _section(mapping: mmap.mmap, section: dict[str, int]) -> bytes:
    """A section's bytes, as the header places them."""
    return mapping[section["offset"] : section["offset"] + section["length"]]


def _open(name: str, stream: BinaryIO) -> Snapshot:
    info = os.fstat(stream.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise invalid("The gallery is not a regular file.")
    size = info.st_size
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
    snapshot = Snapshot(name, header, vectors, ids, index_bytes, mapping, stream)
    weakref.finalize(snapshot, stream.close)  # the file closes with the last reference
    return snapshot


def _index_bytes(index: dict[str, Any], mapping: mmap.mmap) -> np.ndarray | None:
    kind = index.get("kind")
    if kind in ("exact", "usearch", "binary"):
        return None  # indexes of earlier builds, no longer used (gallery/search.py)
    if kind != "pq" or not index["length"]:
        raise invalid("The snapshot names an index kind this service does not know.")
    return np.frombuffer(mapping, dtype=np.uint8, count=index["length"], offset=index["offset"])


# The service's private copy of a caller's file -------------------------------


def open_regular(path: Path) -> tuple[BinaryIO, os.stat_result]:
    """``path`` opened for reading if it is a regular file (not a link, a FIFO,
    a device or a folder: opening a FIFO would wait for a writer forever), and
    its status. OSError for what cannot be opened."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ServiceError(
                ErrorCode.GALLERY_FORBIDDEN,
                "The gallery is a symbolic link.",
                "Only regular files directly inside GALLERY_DIR are read.",
            ) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise invalid("The gallery is not a regular file.")
    return os.fdopen(fd, "rb", buffering=0), info


def private_file(folder: Path) -> BinaryIO:
    """A new file in ``folder`` with no name (O_TMPFILE, or a name removed at
    once where the filesystem lacks it): nobody else can open or change it, and
    its space is freed when the service closes it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                raise
            named = folder / f".copy-{os.getpid()}-{os.urandom(8).hex()}.part"
            fd = os.open(named, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            named.unlink()
    except OSError as exc:
        raise storage_error(exc, "creating a copy") from None
    return os.fdopen(fd, "r+b", buffering=0)


def private_copy(source: BinaryIO, size: int, folder: Path) -> BinaryIO:
    """A copy of ``size`` bytes of ``source`` in a ``private_file``: shared
    blocks where the filesystem can (FICLONE), else copied in the kernel. A
    source that shrinks while it is copied gives a short copy, which the
    snapshot's checks then refuse; it never faults the process."""
    copy = private_file(folder)
    try:
        _copy_into(source.fileno(), copy.fileno(), size)
        copy.seek(0)
    except BaseException as exc:
        copy.close()
        if isinstance(exc, OSError):
            raise storage_error(exc, "copying the snapshot") from None
        raise
    return copy


def _copy_into(src: int, dst: int, size: int) -> None:
    try:
        fcntl.ioctl(dst, FICLONE, src)
        if os.fstat(dst).st_size == size:
            return
        os.ftruncate(dst, 0)  # the source changed size meanwhile: copy what is there
    except OSError:
        pass
    offset = 0
    while offset < size:
        sent = os.sendfile(dst, src, offset, min(size - offset, 1 << 30))
        if sent == 0:
            break  # the source is shorter than it was
        offset += sent
