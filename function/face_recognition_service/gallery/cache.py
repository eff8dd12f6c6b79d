"""Snapshots cached per warm process: read once into a private copy, checked,
memory-mapped; checked for a newer version at most every GALLERY_REFRESH_SECONDS.

A gallery is named by ``s3://bucket/key`` (only buckets in GALLERY_S3_BUCKETS;
the object is downloaded) or by a plain file name in GALLERY_DIR (a regular
file directly inside it; copied). Either way the service searches only its own
copy, a file in GALLERY_CACHE_DIR without a name (``format.private_copy``):
whatever the caller does to the file it named — rewrite it in place, truncate
it, replace it with a damaged one — every answer comes from one whole version
that passed every check, and that answer's ``gallery.hash`` names it.

Versions: the first load of a gallery is made by the request that asks for it
(one load at a time per gallery). Afterwards, a newer version is loaded in the
background while the last good one goes on answering, so a reload never holds
up a request. A newer version that fails its checks is remembered for the
refresh period (not read again on every request) and the last good version
answers meanwhile, marked ``stale``. A gallery whose file was removed is closed.

Open galleries share GALLERY_CACHE_MB of memory: least recently used first out.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .. import aws_clients
from ..aws_clients import s3_read
from ..config import GalleryConfig
from ..errors import ErrorCode, ServiceError
from ..s3_images import parse_s3_uri
from .format import (
    Snapshot,
    invalid,
    open_regular,
    open_snapshot,
    private_copy,
    storage_error,
    storage_full,
    verify_snapshot,
)
from .search import Searcher

logger = logging.getLogger(__name__)

LOAD_STRIPES = 16
# Names remembered at most (open galleries and remembered failures together).
MAX_ENTRIES = 256
# Python's cost of one id in memory beside its row (the str, the list's slot and
# the set of persons), for the cache's memory account: measured with
# tracemalloc, 103 bytes for ids like "person-123456", 125 for 34 characters.
ID_BYTES = 120
# A refresh that fails with these closes the gallery instead of keeping it:
# the caller removed it, or it may no longer be read.
GONE = frozenset({ErrorCode.GALLERY_NOT_FOUND, ErrorCode.GALLERY_FORBIDDEN})


@dataclass
class Gallery:
    """An open snapshot ready to search, and what identifies its version."""

    snapshot: Snapshot
    searcher: Searcher
    person_ids: frozenset[str]
    version: tuple[Any, ...]

    @property
    def model(self) -> str:
        return self.snapshot.model

    @property
    def persons(self) -> int:
        return len(self.person_ids)

    @property
    def resident_bytes(self) -> int:
        """What it holds in memory: the mapped vectors an exact search reads
        (a PQ search reads its few rows with pread), the index, the ids."""
        index = self.snapshot.index_bytes
        held = self.snapshot.vectors.nbytes if index is None else index.nbytes
        return held + self.snapshot.count * ID_BYTES


@dataclass(frozen=True)
class Served:
    """The version a request is answered from; ``stale`` says why a newer one
    was not taken (its error's detail), or None when this is the newest."""

    gallery: Gallery
    stale: str | None = None


@dataclass
class _Entry:
    gallery: Gallery | None  # the last good version
    checked_at: float
    failure: ServiceError | None = None  # why the newest version was refused
    refreshing: bool = False


def _forbidden(message: str, detail: str) -> ServiceError:
    return ServiceError(ErrorCode.GALLERY_FORBIDDEN, message, detail)


def _not_found(where: str) -> ServiceError:
    return ServiceError(ErrorCode.GALLERY_NOT_FOUND, "The gallery snapshot does not exist.", where)


def _too_large(size: int, limit_mb: int) -> ServiceError:
    return invalid(f"The snapshot is {size} bytes; GALLERY_MAX_MB allows {limit_mb * 2**20} bytes.")


class GalleryCache:
    def __init__(self, config: GalleryConfig) -> None:
        self.directory = config.directory
        self.buckets = list(config.s3_buckets)
        self.refresh_seconds = config.refresh_seconds
        self.max_bytes = config.max_mb * 2**20
        self.max_mb = config.max_mb
        self.cache_dir = config.cache_dir
        self.budget_bytes = config.cache_mb * 2**20
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()  # the entries
        # One load at a time per gallery: a lock per stripe of names (hash), so
        # that any number of names a caller may send costs no more locks.
        self._loading = [threading.Lock() for _ in range(LOAD_STRIPES)]

    @property
    def _open(self) -> dict[str, Gallery]:
        """The open galleries by name (for tests and the memory account)."""
        with self._lock:
            return {n: e.gallery for n, e in self._entries.items() if e.gallery is not None}

    def get(self, name: str) -> Served:
        """The version to answer from. A gallery already open answers at once
        (a due refresh starts in the background); the first load is made here,
        one at a time per gallery, and never holds up another gallery."""
        served = self._cached(name)
        if served is not None:
            return served
        with self._loading[hash(name) % LOAD_STRIPES]:
            served = self._cached(name)  # loaded by the request that held the lock
            if served is not None:
                return served
            started = time.monotonic()
            try:
                gallery = self._load(name, None)
            except ServiceError as exc:
                if exc.code not in GONE:  # a read that failed: not repeated within the refresh period
                    self._store(name, _Entry(None, started, exc))
                raise
            self._store(name, _Entry(gallery, started))
            return Served(gallery)

    def _cached(self, name: str) -> Served | None:
        """The open version (starting a due refresh), or the remembered failure
        (raised) within its refresh period; None when a load is needed."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            due = time.monotonic() - entry.checked_at >= self.refresh_seconds
            if entry.gallery is None:
                if due or entry.failure is None:
                    return None
                raise entry.failure
            self._entries.move_to_end(name)
            if due and not entry.refreshing:
                entry.refreshing = True
                threading.Thread(
                    target=self._refresh, args=(name, entry), name="gallery-refresh", daemon=True
                ).start()
            return Served(entry.gallery, None if entry.failure is None else entry.failure.detail)

    def _refresh(self, name: str, entry: _Entry) -> None:
        """Load a newer version if there is one; keep the last good one if it fails."""
        started = time.monotonic()
        try:
            with self._loading[hash(name) % LOAD_STRIPES]:
                gallery = self._load(name, entry.gallery)
        except ServiceError as exc:
            logger.warning("gallery refresh failed: %s (%s)", exc.code.value, exc.detail)
            with self._lock:
                entry.checked_at, entry.refreshing = started, False
                if exc.code in GONE:
                    self._drop(name, entry)
                else:
                    entry.failure = exc
            return
        except Exception:  # a bug: logged, the last good version stays
            logger.exception("gallery refresh failed")
            with self._lock:
                entry.checked_at, entry.refreshing = started, False
            return
        with self._lock:
            old, entry.gallery = entry.gallery, gallery
            entry.checked_at, entry.failure, entry.refreshing = started, None, False
            if old is not None and old is not gallery:
                old.snapshot.close()  # requests still answering from it keep it alive
            self._evict(name)

    def _store(self, name: str, entry: _Entry) -> None:
        with self._lock:
            previous = self._entries.pop(name, None)
            old = None if previous is None else previous.gallery
            if old is not None and old is not entry.gallery:
                old.snapshot.close()
            self._entries[name] = entry
            self._evict(name)

    def _drop(self, name: str, entry: _Entry) -> None:
        if self._entries.get(name) is entry:
            del self._entries[name]
        if entry.gallery is not None:
            entry.gallery.snapshot.close()

    def _evict(self, keep: str) -> None:
        """Least recently used out until the open galleries fit GALLERY_CACHE_MB
        (``keep``, the one just used, always stays) and MAX_ENTRIES names."""
        held = sum(e.gallery.resident_bytes for e in self._entries.values() if e.gallery is not None)
        for name in list(self._entries):
            if held <= self.budget_bytes and len(self._entries) <= MAX_ENTRIES:
                break
            if name == keep:
                continue
            entry = self._entries[name]
            if entry.gallery is not None:
                held -= entry.gallery.resident_bytes
            self._drop(name, entry)

    def preload(self, name: str) -> bool:
        """Load ``name`` ahead of any request (GALLERY_URI); a gallery that
        cannot be read is logged, not raised: /identify then says why."""
        try:
            gallery = self.get(name).gallery
        except ServiceError as exc:
            logger.warning("GALLERY_URI not loaded: %s (%s)", exc.code.value, exc.detail)
            return False
        logger.info("gallery loaded: %d embeddings, %s", gallery.snapshot.count, gallery.snapshot.hash)
        return True

    def _load(self, name: str, cached: Gallery | None) -> Gallery:
        if name.startswith("s3://"):
            return self._from_s3(name, cached)
        return self._from_folder(name, cached)

    def _open_file(self, stream: BinaryIO, name: str, version: tuple[Any, ...]) -> Gallery:
        """Open the private copy, and check it on a thread while the search is
        built: hashing 2 GB is most of a load at 1,000,000 and leaves the GIL.
        A damaged file is refused (INVALID_GALLERY) before anything is searched."""
        snapshot = open_snapshot(stream, verify=False, name=name)
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="gallery-verify") as pool:
                checked = pool.submit(verify_snapshot, snapshot)
                try:
                    searcher = _searcher(snapshot)
                    gallery = Gallery(snapshot, searcher, frozenset(snapshot.ids), version)
                finally:
                    checked.result()  # its INVALID_GALLERY first: a damaged index can fail the build too
        except BaseException:
            snapshot.close()
            raise
        return gallery

    def _room_for(self, size: int) -> None:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.cache_dir).free
        except OSError as exc:
            raise storage_error(exc, "making room") from None
        if free < size:
            raise storage_full(
                f"The snapshot ({size} bytes) does not fit the free space of GALLERY_CACHE_DIR."
            )

    def _from_folder(self, name: str, cached: Gallery | None) -> Gallery:
        if self.directory is None:
            raise _forbidden(
                "Galleries are not enabled on this server.",
                "The operator has set no GALLERY_DIR (or name an s3:// gallery in GALLERY_S3_BUCKETS).",
            )
        if not name or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
            raise _forbidden("The gallery name is not allowed.", "Name a file directly inside GALLERY_DIR.")
        path = self.directory / name
        try:
            stream, info = open_regular(path)
        except OSError as exc:  # a name too long for the filesystem cannot be there either
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
                raise _not_found("No file of that name in GALLERY_DIR.") from None
            raise _forbidden(
                "The gallery cannot be read.", "The file in GALLERY_DIR cannot be opened."
            ) from None
        with stream:
            # ctime too: a rewrite that puts back the size and the modification time is still seen.
            version = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            if cached is not None and cached.version == version:
                return cached
            if info.st_size > self.max_bytes:
                raise _too_large(info.st_size, self.max_mb)
            self._room_for(info.st_size)
            copy = private_copy(stream, info.st_size, self.cache_dir)
        return self._open_file(copy, name, version)

    def _from_s3(self, uri: str, cached: Gallery | None) -> Gallery:
        try:
            bucket, key = parse_s3_uri(uri)
        except ServiceError:
            raise _forbidden("The gallery S3 URI is not valid.", "Use the form s3://bucket/key.") from None
        if bucket not in self.buckets:
            raise _forbidden(
                "The service may not read galleries from this bucket.",
                "Only the buckets named in GALLERY_S3_BUCKETS are read.",
            )
        head = self._s3_call(uri, "head_object", Bucket=bucket, Key=key)
        version = (str(head.get("ETag", "")), int(head.get("ContentLength", 0)))
        if cached is not None and cached.version == version:
            return cached
        size = version[1]
        if size > self.max_bytes:
            raise _too_large(size, self.max_mb)
        self._room_for(size)
        _remove_dead_downloads(self.cache_dir)
        stem = hashlib.sha256(uri.encode()).hexdigest()[:32]
        partial = self.cache_dir / f"{stem}.{os.getpid()}.{threading.get_ident()}.part"
        try:
            self._s3_call(uri, "download_file", Bucket=bucket, Key=key, Filename=str(partial))
            stream = partial.open("rb", buffering=0)
        except OSError as exc:  # S3's own failures are ServiceErrors already (s3_read)
            raise storage_error(exc, "downloading the snapshot") from None
        finally:
            partial.unlink(missing_ok=True)  # open: its space is freed when it closes; else what failed wrote
        return self._open_file(stream, uri.rsplit("/", 1)[-1], version)

    def _s3_call(self, uri: str, method: str, **kwargs: Any) -> Any:
        return s3_read(
            lambda: getattr(aws_clients.client("s3"), method)(**kwargs),
            what="gallery snapshot",
            missing=ErrorCode.GALLERY_NOT_FOUND,
            forbidden=ErrorCode.GALLERY_FORBIDDEN,
        )


def _searcher(snapshot: Snapshot) -> Searcher:
    """The search over a snapshot whose header passed; an index that cannot be
    built from its bytes is the snapshot's fault (INVALID_GALLERY), never a 500."""
    try:
        return Searcher(snapshot)
    except ServiceError:
        raise
    except Exception as exc:  # faiss's own refusal of a malformed index
        logger.warning("gallery index refused: %s", type(exc).__name__)
        raise invalid("The snapshot's index cannot be read.") from None


def _remove_dead_downloads(folder: Path) -> None:
    """Partial downloads (``*.<pid>.<thread>.part``) whose process is gone: one
    killed mid-download (a Lambda init past its 10 s, an out-of-memory kill)
    leaves up to a snapshot's size in /tmp, which the next download would need.
    A download still running in another process of this host is left alone."""
    for part in folder.glob("*.part"):
        pid = next((s[1:] for s in part.suffixes[:-1] if s[1:].isdigit()), "")
        if not pid or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except (PermissionError, OverflowError):  # alive under another user; or no such pid at all
            continue
