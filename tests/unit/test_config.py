"""Every seed setting is read from the environment and from .env."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from face_recognition_service import config
from face_recognition_service.config import Device, Settings, available_cpus

SEED_ENV = {
    "APP_NAME": "Faces",
    "DEBUG": "true",
    "LOG_LEVEL": "warning",
    "HOST": "127.0.0.1",
    "PORT": "9000",
    "WORKERS": "2",
    "MODEL_NAME": "buffalo_l",
    "DETECTION_THRESHOLD": "0.6",
    "DEVICE": "CUDA",
    "MAX_IMAGE_SIZE": "5242880",
    "CORS_ENABLED": "false",
    "CORS_ORIGINS": '["https://a.example"]',
    "MODEL_DIR": "/opt/models",
}


def test_seed_variables_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SEED_ENV.items():
        monkeypatch.setenv(key, value)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.app_name, s.debug, s.log_level, s.host, s.port, s.workers) == (
        "Faces",
        True,
        "WARNING",
        "127.0.0.1",
        9000,
        2,
    )
    assert (s.model_name, s.detection_threshold, s.device, s.max_image_size) == (
        "buffalo_l",
        0.6,
        Device.CUDA,
        5242880,
    )
    assert (s.cors_enabled, s.cors_origins) == (False, ["https://a.example"])
    assert s.model_path == Path("/opt/models/buffalo_l")


def test_dotenv_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("MODEL_NAME=buffalo_l\nCORS_ORIGINS=https://a.example, https://b.example\nPORT=8123\n")
    s = Settings(_env_file=env)  # type: ignore[call-arg]
    assert s.model_name == "buffalo_l" and s.port == 8123
    assert s.cors_origins == ["https://a.example", "https://b.example"]


def test_defaults_are_the_embedded_model_on_cpu() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.model_name == "buffalo_sc" and s.device is Device.CPU and s.max_image_size == 10 * 1024 * 1024
    assert s.threads >= 1


@pytest.mark.parametrize(
    "key,value",
    [
        ("LOG_LEVEL", "loud"),
        ("DEVICE", "tpu"),
        ("DETECTION_THRESHOLD", "1.5"),
        ("MODEL_S3_URI", "/models/buffalo_l.zip"),
        ("MODEL_S3_URI", "s3://"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValueError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_an_s3_model_uri_is_kept_and_empty_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_S3_URI", "s3://face-models/packs")
    assert Settings(_env_file=None).model_s3_uri == "s3://face-models/packs"  # type: ignore[call-arg]
    monkeypatch.setenv("MODEL_S3_URI", "")
    assert Settings(_env_file=None).model_s3_uri is None  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "face_recognition_service.server"],
        ["-m", "uvicorn", "face_recognition_service.server.main:app"],
        ["-m", "face_recognition_service.provision"],
    ],
    ids=["server", "uvicorn", "provision"],
)
@pytest.mark.slow
def test_a_bad_setting_is_one_line_and_a_non_zero_exit(command: list[str], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "LOG_LEVEL": "verbose", "DETECTION_THRESHOLD": "abc", "API_KEY": "s3cret-value"}
    result = subprocess.run(
        [sys.executable, *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "Traceback" not in text and "s3cret-value" not in text
    lines = [line for line in text.splitlines() if line.startswith("configuration error:")]
    assert any("LOG_LEVEL=verbose" in line and "debug, info" in line for line in lines), text
    assert any("DETECTION_THRESHOLD=abc" in line for line in lines), text
    assert len(text.strip().splitlines()) <= 4, text  # no wall of validation output


def cgroup_files(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    ("proc", "files", "expected"),
    [
        # cgroup v2, the process's own group: 1.16 CPUs (a 2,048 MB Lambda's share) -> 1
        ("0::/fn\n", {"fn/cpu.max": "116000 100000\n"}, 1),
        ("0::/fn\n", {"fn/cpu.max": "150000 100000\n"}, 2),  # 1.5 rounds to 2
        ("0::/fn\n", {"fn/cpu.max": "max 100000\n"}, 64),  # no quota: the affinity
        # v1, a cpu,cpuacct hierarchy
        (
            "4:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
            },
            1,
        ),
        (
            "4:cpu,cpuacct:/docker/abc\n",
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
            },
            64,
        ),
        # inside a container the mount's root is the container's own group
        ("0::/\n", {"cpu.max": "300000 100000"}, 3),
        ("", {"cpu/cpu.cfs_quota_us": "250000", "cpu/cpu.cfs_period_us": "100000"}, 3),  # 2.5 rounds half up
        ("0::/fn\n", {"fn/cpu.max": "garbage"}, 64),  # unreadable: no quota
        ("0::/fn\n", {"fn/cpu.max": "100000 0"}, 64),
        ("not a cgroup line\n", {}, 64),
    ],
)
def test_available_cpus_follow_a_cpu_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc: str, files: dict[str, str], expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", raising=False)
    root = cgroup_files(tmp_path / "cgroup", files)
    (tmp_path / "proc").write_text(proc)
    assert available_cpus(root, tmp_path / "proc") == expected


@pytest.mark.parametrize(
    ("memory", "expected"), [("2048", 1), ("1769", 1), ("3008", 2), ("10240", 6), ("128", 1)]
)
def test_a_lambda_function_s_cpus_follow_its_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: str, expected: int
) -> None:
    """Lambda shows two vCPUs at 2,048 MB but gives 1,769 MB's worth a vCPU."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory)
    assert available_cpus(tmp_path / "none", tmp_path / "none") == expected
    monkeypatch.setattr(config, "_cgroup_quota", lambda root, proc: None)  # whatever quota this machine has
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.engine.threads == expected and settings.ort_threads == 0


def _writable_cpu_cgroup() -> Path | None:
    for root in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")):
        quota = root / ("cpu.cfs_quota_us" if root.name == "cpu" else "cgroup.controllers")
        if quota.exists() and os.access(root, os.W_OK):
            return root
    return None


@pytest.mark.skipif(
    _writable_cpu_cgroup() is None,
    reason="needs a writable cgroup cpu controller (root); the quota files are also read from fakes above",
)
def test_a_process_in_a_real_cgroup_with_a_lambda_sized_quota_gets_one_cpu() -> None:
    import subprocess
    import sys

    root = _writable_cpu_cgroup()
    assert root is not None
    group = root / f"face-test-{os.getpid()}"
    group.mkdir()
    try:
        try:
            if root.name == "cpu":
                (group / "cpu.cfs_period_us").write_text("100000")
                (group / "cpu.cfs_quota_us").write_text("116000")
            else:
                (group / "cpu.max").write_text("116000 100000")
        except OSError as exc:  # cgroup v2 without the cpu controller delegated here
            pytest.skip(
                f"cannot set a CPU quota here ({exc}); the quota files are also read from fakes above"
            )
        code = "from face_recognition_service.config import available_cpus; print(available_cpus())"
        joined = f"echo $$ > {group / 'cgroup.procs'} && exec {sys.executable} -c '{code}'"
        env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"}
        done = subprocess.run(["sh", "-c", joined], capture_output=True, text=True, check=True, env=env)
        assert done.stdout.strip() == "1"
    finally:
        group.rmdir()


@pytest.mark.parametrize(
    ("memory", "budget_mb"), [("10240", 192), ("3008", 192), ("1536", 192), ("1024", 128), ("128", 16)]
)
def test_the_decode_budget_is_an_eighth_of_a_lambda_function_s_memory_at_most_192_mib(
    monkeypatch: pytest.MonkeyPatch, memory: str, budget_mb: int
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.decode_budget_bytes == budget_mb * 2**20
    assert settings.images.decode_budget_bytes == budget_mb * 2**20
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    assert Settings(_env_file=None).decode_budget_bytes == 192 * 2**20  # type: ignore[call-arg]
