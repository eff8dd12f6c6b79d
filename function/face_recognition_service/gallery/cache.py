"""Snapshots cached per warm process: read once, memory-mapped, checked for a
newer version at most every GALLERY_REFRESH_SECONDS.

A gallery is named by ``s3://bucket/key`` (only buckets in GALLERY_S3_BUCKETS;
the object is downloaded to GALLERY_CACHE_DIR, the one thing the service
writes, then mapped) or by a plain file name in GALLERY_DIR (mapped where it
lies). The service never writes a gallery; it only caches what it read.
"""

from __future__ import annotations

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
from typing import Any

from .. import aws_clients
from ..aws_clients import s3_read
from ..config import GalleryConfig
from ..errors import ErrorCode, ServiceError
from ..s3_images import parse_s3_uri
from .format import Snapshot, invalid, open_snapshot, verify_snapshot
from .search import Searcher

logger = logging.getLogger(__name__)

# Galleries one process keeps open at once (least recently used goes first).
MAX_OPEN = 4
LOAD_STRIPES = 16


@dataclass
class Gallery:
    """An open snapshot ready to search, and what identifies its version."""

    snapshot: Snapshot
    searcher: Searcher
    persons: int
    version: tuple[Any, ...]
    checked_at: float

    @property
    def model(self) -> str:
        return self.snapshot.model


def _forbidden(message: str, detail: str) -> ServiceError:
    return ServiceError(ErrorCode.GALLERY_FORBIDDEN, message, detail)


def _not_found(name: str) -> ServiceError:
    return ServiceError(ErrorCode.GALLERY_NOT_FOUND, "The gallery snapshot does not exist.", name)


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
        self._open: OrderedDict[str, Gallery] = OrderedDict()
        self._lock = threading.Lock()  # the open galleries
        # One load at a time per gallery: a lock per stripe of names (hash), so
        # that any number of names a caller may send costs no more locks.
        self._loading = [threading.Lock() for _ in range(LOAD_STRIPES)]

    def get(self, name: str) -> Gallery:
        """The gallery, loading or refreshing it when due. One load at a time
        per gallery; a gallery already open is not held up by another one's
        load (a 2 GB download takes seconds)."""
        cached = self._fresh(name)
        if cached is not None:
            return cached
        with self._loading[hash(name) % LOAD_STRIPES]:
            cached = self._fresh(name)  # loaded by the request that held the lock
            if cached is not None:
                return cached
            with self._lock:
                cached = self._open.get(name)
            started = time.monotonic()
            loaded = self._load(name, cached)
            loaded.checked_at = started
            with self._lock:
                self._open[name] = loaded
                self._open.move_to_end(name)
                while len(self._open) > MAX_OPEN:
                    self._open.popitem(last=False)[1].snapshot.close()
            return loaded

    def _fresh(self, name: str) -> Gallery | None:
        """The open gallery if it was checked within GALLERY_REFRESH_SECONDS."""
        with self._lock:
            cached = self._open.get(name)
            if cached is None or time.monotonic() - cached.checked_at >= self.refresh_seconds:
                return None
            self._open.move_to_end(name)
            return cached

    def preload(self, name: str) -> bool:
        """Load ``name`` ahead of any request (GALLERY_URI); a gallery that
        cannot be read is logged, not raised: /identify then says why."""
        try:
            gallery = self.get(name)
        except ServiceError as exc:
            logger.warning("GALLERY_URI not loaded: %s (%s)", exc.code.value, exc.detail)
            return False
        logger.info("gallery loaded: %d embeddings, %s", gallery.snapshot.count, gallery.snapshot.hash)
        return True

    def _load(self, name: str, cached: Gallery | None) -> Gallery:
        if name.startswith("s3://"):
            return self._from_s3(name, cached)
        return self._from_folder(name, cached)

    def _open_file(self, path: Path, version: tuple[Any, ...]) -> Gallery:
        """Open, and check the hashes on a thread while the search is built:
        hashing 2 GB is most of a load at 1,000,000 and leaves the GIL. A
        damaged file is refused (INVALID_GALLERY) before anything is searched."""
        snapshot = open_snapshot(path, verify=False)
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="gallery-verify") as pool:
                checked = pool.submit(verify_snapshot, snapshot)
                try:
                    gallery = Gallery(snapshot, Searcher(snapshot), len(set(snapshot.ids)), version, 0.0)
                finally:
                    checked.result()  # its INVALID_GALLERY first: a damaged index can fail the build too
        except BaseException:
            snapshot.close()
            raise
        return gallery

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
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise _not_found(name) from None
        except OSError:
            raise _forbidden("The gallery cannot be read.", name) from None
        version = (info.st_ino, info.st_size, info.st_mtime_ns)
        if cached is not None and cached.version == version:
            return cached
        if info.st_size > self.max_bytes:
            raise _too_large(info.st_size, self.max_mb)
        return self._open_file(path, version)

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
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_dead_downloads(self.cache_dir)
        if shutil.disk_usage(self.cache_dir).free < size:
            raise invalid(f"The snapshot ({size} bytes) does not fit the free space of GALLERY_CACHE_DIR.")
        stem = hashlib.sha256(uri.encode()).hexdigest()[:32]
        path = self.cache_dir / f"{stem}-{hashlib.sha256(version[0].encode()).hexdigest()[:16]}.frg"
        if not path.exists():
            partial = path.with_suffix(f".{os.getpid()}.part")
            try:
                self._s3_call(uri, "download_file", Bucket=bucket, Key=key, Filename=str(partial))
            except BaseException:
                partial.unlink(missing_ok=True)  # what a failed download wrote
                raise
            partial.replace(path)
        for old in self.cache_dir.glob(f"{stem}-*.frg"):
            if old != path:
                old.unlink(missing_ok=True)  # the mapping of an open one stays valid
        return self._open_file(path, version)

    def _s3_call(self, uri: str, method: str, **kwargs: Any) -> Any:
        return s3_read(
            lambda: getattr(aws_clients.client("s3"), method)(**kwargs),
            uri=uri,
            what="gallery snapshot",
            missing=ErrorCode.GALLERY_NOT_FOUND,
            forbidden=ErrorCode.GALLERY_FORBIDDEN,
        )


def _remove_dead_downloads(folder: Path) -> None:
    """Partial downloads (``*.<pid>.part``) whose process is gone: one killed
    mid-download (a Lambda init past its 10 s, an out-of-memory kill) leaves
    up to a snapshot's size in /tmp, which the next download would need. A
    download still running in another process of this host is left alone."""
    for part in folder.glob("*.part"):
        pid = part.suffixes[-2][1:] if len(part.suffixes) >= 2 else ""
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except (PermissionError, OverflowError):  # alive under another user; or no such pid at all
            continue
