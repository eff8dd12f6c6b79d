"""One settings object, read from the environment and ``.env``.

Names have no prefix (the README's Configuration table lists each one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .matching import OperatingPoint

# The lowest detection threshold a setting or a request may ask for. Below it
# SCRFD's scores are noise: on a one-face portrait 0.1 finds one face and 1e-9
# finds 6,096.
MIN_DETECTION_THRESHOLD = 0.1
# The largest decoded-pixel buffer of one request, in MiB, unless
# DECODE_BUDGET_MB says otherwise (under Lambda: at most 1/8 of the memory).
DEFAULT_DECODE_BUDGET_MB = 192


class Device(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"


def _default_model_dir() -> Path:
    # InsightFace's own cache, so a pack a user already downloaded is found.
    return Path.home() / ".insightface" / "models"


@dataclass(frozen=True)
class ImageLimits:
    """What a photo may be and how it is read (faces.py, usecases.embed)."""

    max_image_size: int
    max_image_pixels: int
    decode_budget_bytes: int
    reduced_decode: bool
    s3_buckets: tuple[str, ...]
    max_batch_images: int


@dataclass(frozen=True)
class ModelConfig:
    """Which pack the engine loads and how it runs (engine.load_model)."""

    path: Path
    device: str
    threads: int
    det_size: int
    det_retry_size: int
    detection_threshold: float
    min_face_size: int
    coarse_detection: bool
    graph_rewrite: bool = True


@dataclass(frozen=True)
class GalleryConfig:
    """Where /identify's snapshots may come from and how they are cached (gallery.cache)."""

    directory: Path | None
    s3_buckets: tuple[str, ...]
    refresh_seconds: int
    max_mb: int
    cache_dir: Path
    preload: str | None
    cache_mb: int = 1024


@dataclass(frozen=True)
class AdmissionConfig:
    """Heavy work in flight, waiting, and slow bodies (api.admission, api.middleware)."""

    in_flight: int
    max_queued: int
    queue_timeout_seconds: float
    body_timeout_seconds: float


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        protected_namespaces=(),
    )

    # API
    app_name: str = "Face Recognition Service"
    debug: bool = False
    log_level: str = "info"

    # Server (plain-server mode only)
    host: str = "0.0.0.0"
    port: int = 8000
    workers: int = Field(default=1, ge=1)
    # Connections one worker keeps open at most (beyond: 503 from uvicorn), and
    # how long an idle keep-alive connection or a slow request body may take.
    max_connections: int = Field(default=256, ge=1)
    keep_alive_seconds: int = Field(default=5, ge=1, le=300)
    body_timeout_seconds: float = Field(default=15.0, gt=0, le=300)

    # Prometheus metrics at /metrics (plain-server mode; the Lambda function
    # publishes CloudWatch metrics instead).
    metrics_enabled: bool = True

    # Work in flight: heavy requests (embed, verify, batch, compare) at once per
    # process (0: CPUs / ORT threads, so 1 with the default threads), and how many
    # more may wait for a turn (for at most QUEUE_TIMEOUT_SECONDS) before
    # SERVICE_BUSY (503, Retry-After).
    max_in_flight: int = Field(default=0, ge=0)
    max_queued: int = Field(default=8, ge=0)
    queue_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    # Decisions: the operating point /verify uses when a request names none
    # (strict, balanced, lenient: docs/decisions.md#thresholds-and-why-the-old-example-is-replaced).
    operating_point: OperatingPoint = OperatingPoint.BALANCED

    # Model
    model_name: str = "buffalo_sc"
    model_dir: Path = Field(default_factory=_default_model_dir)
    detection_threshold: float = Field(default=0.5, ge=MIN_DETECTION_THRESHOLD, lt=1.0)
    device: Device = Device.CPU
    # Longest side of the detector input. 640 is InsightFace's default.
    det_size: int = Field(default=640, ge=64, le=2048)
    # Second, smaller detector pass when the first finds nothing: faces that
    # fill the frame are too big for the detector's anchors at 640. 0 disables.
    det_retry_size: int = Field(default=160, ge=0, le=2048)
    # The smallest face counted, in pixels (the shorter side of its box, in the
    # photo's own pixels); a request's min_face_size overrides it. 32: below it
    # nearly every face gets a poor quality verdict and its embedding drifts
    # (cosine < 0.87 to the same face at full size; bench/detection_scale.py).
    min_face_size: int = Field(default=32, ge=0, le=4096)
    # Detect at the coarsest scale that still finds a face of MIN_FACE_SIZE (at
    # most DET_SIZE), refining small faces' landmarks on a finer crop: 0.87x the
    # time on the labelled photos. Off by default: SCRFD's landmarks move with
    # the detector's scale, so embeddings move too (cosine down to 0.968 to the
    # 640 pass for faces of 112 px and up; the lowest same-person similarity of
    # the labelled photos falls from 0.600 to 0.566; BENCHMARKS.md "Detection
    # scale", bench/coarse_detection.py).
    coarse_detection: bool = False
    # Run both networks' graphs rewritten for ONNX Runtime's CPU kernels (the
    # same functions; engine/graph.py): the recogniser's PReLUs and grouped
    # convolutions as depthwise convolutions (3.8 instead of 7.8-8.3 ms on 2
    # threads, 6.4 instead of 12.2 on one), the detector's three head
    # convolutions at each stride as one (12-15 % faster, the same outputs bit
    # for bit). Off: the packs' graphs as they are.
    graph_rewrite: bool = True
    # ONNX Runtime intra-op threads; 0 means one per CPU the process can keep
    # busy (available_cpus: within a container's CPU quota or a Lambda
    # function's share, 1,769 MB a vCPU; one at 2,048 MB).
    ort_threads: int = Field(default=0, ge=0)

    # Image processing
    max_image_size: int = Field(default=10 * 1024 * 1024, gt=0)  # bytes, after base64
    # Width x height from the header: a decompression-bomb guard. 60 MP admits a
    # 50 MP phone photo (JPEGs are decoded reduced; see DECODE_BUDGET_MB).
    max_image_pixels: int = Field(default=60_000_000, gt=0)
    # Detect and crop large photos at a reduced scale: a JPEG decoded at a DCT
    # reduction, any other format averaged down after decoding (only small faces
    # cost a finer crop). Off: every image decoded and cropped at full size.
    reduced_decode: bool = True
    # The largest decoded-pixel buffer one request may make, in MiB, checked from
    # the header before decoding (an RGBA or 16-bit image needs 4-8 bytes a pixel).
    # Default: 192, or an eighth of the Lambda function's memory when smaller.
    decode_budget_mb: int | None = Field(default=None, ge=16)

    # Access: an optional API key callers send as `x-api-key` (health stays open).
    # API_KEY is a fixed key for plain servers; under Lambda the key can come from
    # SSM Parameter Store or Secrets Manager instead, cached for API_KEY_CACHE_SECONDS.
    api_key: SecretStr | None = None
    api_key_parameter: str | None = None
    api_key_secret: str | None = None
    api_key_cache_seconds: int = Field(default=300, ge=0)

    # Lambda only: a model pack in S3 to use instead of the one baked into the
    # image, fetched to /tmp at cold start; and an API Gateway stage prefix to strip.
    model_s3_uri: str | None = None
    api_base_path: str = "/"

    # Images read from S3 (image_s3_uri): only from these buckets (comma list or
    # JSON list); empty means the feature is off.
    image_s3_buckets: Annotated[list[str], NoDecode] = []
    # Queue mode (SQS events): where results go, an s3://bucket/prefix or a queue URL.
    results_s3_uri: str | None = None
    results_queue_url: str | None = None
    # /embed/batch: images per request.
    max_batch_images: int = Field(default=16, ge=1, le=256)

    # /identify's gallery snapshots (the caller builds them: python -m
    # face_recognition_service.gallery build). A gallery is named by an S3 URI in
    # one of GALLERY_S3_BUCKETS, or, on a plain server, by a file name in
    # GALLERY_DIR. Loaded snapshots are cached per process, checked for a newer
    # version (ETag or file time) at most every GALLERY_REFRESH_SECONDS; one
    # larger than GALLERY_MAX_MB is refused before it is read. GALLERY_URI is
    # loaded at start-up, so that no caller waits for it.
    gallery_dir: Path | None = None
    gallery_s3_buckets: Annotated[list[str], NoDecode] = []
    gallery_refresh_seconds: int = Field(default=60, ge=0)
    gallery_max_mb: int = Field(default=4096, ge=1)
    gallery_uri: str | None = None
    # Where the service keeps its own copy of each open snapshot (downloaded from
    # S3, or copied from GALLERY_DIR, so that a file rewritten in place is never
    # searched): files without a name, freed when the snapshot closes (Lambda: /tmp).
    gallery_cache_dir: Path = Path("/tmp/face-galleries")
    # The memory open snapshots may take together (least recently used closes
    # first; the newest always stays). Default: half of the process's memory
    # (the Lambda function's, a container's limit, or the machine's), 256 at least.
    gallery_cache_mb: int | None = Field(default=None, ge=16)

    # CORS
    cors_enabled: bool = True
    cors_origins: Annotated[list[str], NoDecode] = ["*"]

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_no_key(cls, value: object) -> object:
        # API_KEY= (set but empty) means "no key", as for every other unset
        # setting; an empty key would otherwise lock every route with 401.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("log_level")
    @classmethod
    def _upper_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return level

    @field_validator("device", mode="before")
    @classmethod
    def _lower_device(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("model_s3_uri")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        if value and not (value.startswith("s3://") and len(value) > len("s3://")):
            raise ValueError("must look like s3://bucket/prefix")
        return value or None

    @field_validator("cors_origins", "image_s3_buckets", "gallery_s3_buckets", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        # Accept a JSON list (["*"]) and the plain comma list that is
        # easier to pass through a SAM parameter (https://a.example,https://b.example).
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @property
    def model_path(self) -> Path:
        return self.model_dir.expanduser() / self.model_name

    # The settings by concern: each component receives only its group.
    @property
    def images(self) -> ImageLimits:
        return ImageLimits(
            self.max_image_size,
            self.max_image_pixels,
            self.decode_budget_bytes,
            self.reduced_decode,
            tuple(self.image_s3_buckets),
            self.max_batch_images,
        )

    @property
    def engine(self) -> ModelConfig:
        return ModelConfig(
            self.model_path,
            self.device.value,
            self.threads,
            self.det_size,
            self.det_retry_size,
            self.detection_threshold,
            self.min_face_size,
            self.coarse_detection,
            self.graph_rewrite,
        )

    @property
    def galleries(self) -> GalleryConfig:
        return GalleryConfig(
            self.gallery_dir,
            tuple(self.gallery_s3_buckets),
            self.gallery_refresh_seconds,
            self.gallery_max_mb,
            self.gallery_cache_dir,
            self.gallery_uri,
            self.gallery_cache_mb or max(256, memory_mb() // 2),
        )

    @property
    def admission(self) -> AdmissionConfig:
        return AdmissionConfig(
            self.in_flight_limit, self.max_queued, self.queue_timeout_seconds, self.body_timeout_seconds
        )

    @property
    def decode_budget_bytes(self) -> int:
        if self.decode_budget_mb is not None:
            return self.decode_budget_mb * 2**20
        budget = DEFAULT_DECODE_BUDGET_MB
        lambda_memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        if lambda_memory.isdigit():
            budget = min(budget, max(16, int(lambda_memory) // 8))
        return budget * 2**20

    @property
    def in_flight_limit(self) -> int:
        # Each request's inference already uses ORT_THREADS cores: more requests
        # in flight than cores / threads only adds contention (measured: the same
        # throughput, and health p99 27 -> 11 ms at 4 clients, BENCHMARKS.md).
        return self.max_in_flight or max(1, available_cpus() // self.threads)

    @property
    def threads(self) -> int:
        return self.ort_threads or available_cpus()


# Lambda gives a function one vCPU's worth of time per 1,769 MB of memory,
# whatever number of vCPUs it shows (two at 2,048 MB).
LAMBDA_MB_PER_VCPU = 1769


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup"), proc: Path = Path("/proc/self/cgroup")) -> int:
    """The CPUs this process can keep busy: those it may run on, within its CPU
    quota (a container's cgroup; a Lambda function's share of 1,769 MB a
    vCPU), rounded to the nearest whole CPU, at least one.

    Under a quota, threads beyond it only use the quota up faster and are then
    stopped for the rest of the period. With a 1.16-CPU quota (a 2,048 MB
    function) and requests back to back, an embed took 63-73 ms on two ONNX
    Runtime threads and 45-49 ms on one; with 1.5 CPUs, 40-46 ms on two and
    45-48 on one (BENCHMARKS.md "CPU quota", bench/cpu_quota.py)."""
    cpus = float(visible_cpus())
    for quota in (_cgroup_quota(cgroup_root, proc), _lambda_share()):
        if quota is not None:
            cpus = min(cpus, quota)
    return max(1, int(cpus + 0.5))


def memory_mb(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The memory this process may use, in MiB: the Lambda function's, else its
    container's cgroup limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``),
    else the machine's."""
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    if memory.isdigit() and int(memory) > 0:
        return int(memory)
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        try:
            limit = (cgroup_root / name).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            return min(int(limit), machine) // 2**20
    return machine // 2**20


def visible_cpus() -> int:
    """The CPUs this process may run on (its affinity), quota or not."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _lambda_share() -> float | None:
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    return int(memory) / LAMBDA_MB_PER_VCPU if memory.isdigit() and int(memory) > 0 else None


def _cgroup_quota(root: Path, proc: Path) -> float | None:
    """This process's cgroup CPU quota in CPUs (cgroup v2 ``cpu.max``, or v1
    ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``); None when unlimited or
    unreadable. The first quota file found decides (``_quota_files``)."""
    for path, version in _quota_files(root, proc):
        try:
            if version == "v2":
                quota, period = path.read_text().split()[:2]
            else:
                quota = path.read_text().strip()
                period = (path.parent / "cpu.cfs_period_us").read_text().strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1") or not period.isdigit() or int(period) == 0:
            return None
        try:
            return int(quota) / int(period)
        except ValueError:
            return None
    return None


def _quota_files(root: Path, proc: Path) -> list[tuple[Path, str]]:
    """Where a quota may be, in order: this process's own cgroup's file (from
    ``proc``), then the mount's root (inside a container, the container's own)."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        lines = []
    paths: list[tuple[Path, str]] = []
    for line in lines:
        if line.count(":") < 2:
            continue  # not a cgroup line
        _, controllers, group = line.split(":", 2)
        group = group.lstrip("/")
        if controllers == "":  # v2
            paths.append((root / group / "cpu.max", "v2"))
        elif "cpu" in controllers.split(","):
            paths.append((root / controllers / group / "cpu.cfs_quota_us", "v1"))
    return [*paths, (root / "cpu.max", "v2"), (root / "cpu" / "cpu.cfs_quota_us", "v1")]


class SettingsError(SystemExit):
    """Settings that cannot be used: one or two lines naming each variable, the
    value given and what is allowed. A SystemExit (status 2), so an entry point
    stops before starting anything, without a traceback."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(2)
        self.lines = lines

    def __str__(self) -> str:
        return "\n".join(self.lines)


def describe(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        name = str(err["loc"][0]).upper() if err.get("loc") else "SETTINGS"
        given = err.get("input")
        shown = (
            given
            if isinstance(given, str | int | float | bool) and len(str(given)) <= 80
            else "(the value given)"
        )
        if name in ("API_KEY",):  # never echo a secret
            shown = "(hidden)"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        lines.append(f"configuration error: {name}={shown!s}: {message}")
    return lines


def load_settings() -> Settings:
    """Settings from the environment, or SettingsError with a line per bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, built once. Tests build their own ``Settings``."""
    return load_settings()


# Each setting's group and what it does: the source of the generated
# configuration page (docs/configuration.md, infra/make_docs.py). A setting
# without an entry fails tests/integration/server/test_docs_site.py.
SETTING_DOCS: dict[str, tuple[str, str]] = {
    "app_name": ("Server", "Title in the docs and logs."),
    "debug": ("Server", "Debug-level logs (responses never carry tracebacks)."),
    "log_level": ("Server", "debug, info, warning, error or critical."),
    "host": ("Server", "Plain server: the address to listen on."),
    "port": ("Server", "Plain server: the port."),
    "workers": ("Server", "Plain server: worker processes, each with its own model."),
    "max_connections": ("Server", "Plain server: connections per worker; past it, 503 `SERVICE_BUSY`."),
    "keep_alive_seconds": ("Server", "Plain server: an idle keep-alive connection closes after this."),
    "body_timeout_seconds": ("Admission", "A request body must arrive within this (408 past it)."),
    "metrics_enabled": ("Server", "Prometheus `/metrics` (plain server)."),
    "max_in_flight": ("Admission", "Heavy requests at once per process; 0: CPUs / ORT threads."),
    "max_queued": ("Admission", "Heavy requests that may wait for a turn before `SERVICE_BUSY`."),
    "queue_timeout_seconds": ("Admission", "How long a heavy request may wait for a turn."),
    "operating_point": (
        "Decisions",
        "The threshold `/verify` and `/identify` use when a request names none.",
    ),
    "model_name": ("Model", "buffalo_sc (embedded), buffalo_s, buffalo_m or buffalo_l."),
    "model_dir": ("Model", "Packs live in `MODEL_DIR/MODEL_NAME/` (InsightFace's own cache layout)."),
    "detection_threshold": ("Model", "The detector score a face needs (0.1 or more)."),
    "device": ("Model", "cpu, or cuda with `onnxruntime-gpu` installed."),
    "det_size": ("Model", "The detector's input, longest side."),
    "det_retry_size": ("Model", "A second, smaller detector pass when the first finds nothing (0: none)."),
    "min_face_size": (
        "Model",
        "The smallest face counted, in pixels (shorter side of its box); 0 counts every face.",
    ),
    "coarse_detection": ("Model", "Detect at the coarsest scale that still finds a `MIN_FACE_SIZE` face."),
    "graph_rewrite": (
        "Model",
        "CPU: run both networks rewritten for ONNX Runtime's kernels: the recogniser's PReLUs and grouped "
        "convolution as depthwise ones, the detector's head convolutions stacked (same outputs, faster).",
    ),
    "ort_threads": (
        "Model",
        "ONNX Runtime threads; 0: one per CPU the process can keep busy (within a CPU quota; Lambda: 1,769 MB a vCPU).",
    ),
    "max_image_size": ("Images", "Bytes of an image after base64 decoding."),
    "max_image_pixels": ("Images", "Width x height, checked from the header."),
    "reduced_decode": ("Images", "Detect and crop large photos at a reduced scale (off: full size)."),
    "decode_budget_mb": (
        "Images",
        "What one decode may hold, from the header (default 192, under Lambda at most 1/8 of its memory).",
    ),
    "api_key": ("Access", "Callers must send it as `x-api-key` (health and the docs stay open)."),
    "api_key_parameter": ("Access", "Lambda: the key from this SSM parameter."),
    "api_key_secret": ("Access", "Lambda: the key from this Secrets Manager secret."),
    "api_key_cache_seconds": ("Access", "Lambda: how long the key read from SSM or Secrets Manager is kept."),
    "model_s3_uri": (
        "Lambda",
        "Fetch the pack from `s3://bucket/prefix` at cold start instead of the baked one.",
    ),
    "api_base_path": ("Lambda", "An API Gateway stage prefix to strip from paths (e.g. `/prod`)."),
    "image_s3_buckets": ("Images", "Buckets `image_s3_uri` may read from (comma list); unset: S3 input off."),
    "results_s3_uri": ("Queue", "Queue mode: results go to `<prefix>/<id>.json` here."),
    "results_queue_url": ("Queue", "Queue mode: or to this SQS queue."),
    "max_batch_images": ("Images", "Photos per `/embed/batch`."),
    "gallery_dir": ("Galleries", "Plain server: the folder `/identify`'s `gallery` names a file in."),
    "gallery_s3_buckets": ("Galleries", "Buckets `/identify` may read snapshots from (comma list)."),
    "gallery_refresh_seconds": ("Galleries", "How often a cached snapshot is checked for a newer version."),
    "gallery_max_mb": ("Galleries", "A larger snapshot is refused before it is read."),
    "gallery_uri": (
        "Galleries",
        "A snapshot loaded at start-up (a file name in `GALLERY_DIR` or an `s3://` URI).",
    ),
    "gallery_cache_dir": (
        "Galleries",
        "Where the service keeps its own copy of each open snapshot (unnamed files, freed when it closes).",
    ),
    "gallery_cache_mb": (
        "Galleries",
        "Memory open snapshots may take together (default: half the process's memory, at least 256).",
    ),
    "cors_enabled": ("Server", "CORS headers from the app (the Lambda template leaves CORS to API Gateway)."),
    "cors_origins": ("Server", "Allowed origins: a JSON list or a comma list."),
}
