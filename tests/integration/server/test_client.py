"""face_recognition_service.client against a real running server: every route,
typed errors, SERVICE_BUSY retried as Retry-After says, a dropped connection
retried, and an error that is the caller's raised at once."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from face_recognition_service import client as api
from face_recognition_service.client import (
    AsyncFaceClient,
    EmbedResult,
    FaceClient,
    FaceServiceError,
    IdentifyResult,
    MultipleFacesDetected,
    NoFaceDetected,
    Unauthorized,
    Unreachable,
)
from face_recognition_service.errors import ErrorCode
from face_recognition_service.gallery.build import build
from tests.support.galleries import write_jsonl
from tests.support.helpers import FACES, encode, read
from tests.support.server_support import RunningServer, running_server


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("client")
    galleries = workdir / "galleries"
    galleries.mkdir()
    with running_server(model_dir, workdir, GALLERY_DIR=str(galleries), API_KEY="k1") as running:
        with FaceClient(f"http://127.0.0.1:{running.port}", api_key="k1") as faces:
            rows = [
                {"id": person, **faces.embed(FACES / photo, embedding_format="base64")}
                for person, photo in (
                    ("obama", "obama_1.jpg"),
                    ("biden", "biden_1.jpg"),
                    ("rose", "rose_leslie_1.jpg"),
                )
            ]
        build(write_jsonl(workdir / "staff.jsonl", rows), galleries / "staff.frg")
        yield running


def url(server: RunningServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def test_every_route(server: RunningServer) -> None:
    with FaceClient(url(server), api_key="k1") as faces:
        assert faces.health()["model_loaded"] is True
        assert faces.model_info()["embedding_size"] == 512
        obama = faces.embed(FACES / "obama_1.jpg")
        assert len(obama["embedding"]) == 512 and obama["model"].startswith("buffalo_sc/")
        batch = faces.embed_batch({"a": FACES / "obama_2.jpg", "b": b"not a photo"})
        assert [r.get("error_code") for r in batch["results"]] == [None, "INVALID_IMAGE"]
        decided = faces.verify(FACES / "obama_4.jpg", references=[{"id": "obama", **obama}])
        assert decided["match"] is True and decided["best_match"]["id"] == "obama"
        ranked = faces.compare(obama["embedding"], [{"id": "obama", "embedding": obama["embedding"]}])
        assert ranked["best_match"]["id"] == "obama"
        who = faces.identify(FACES / "biden_2.jpg", gallery="staff.frg")
        assert who["identity"] == "biden" and who["gallery"]["size"] == 3
        everyone = faces.identify(read("obama_and_biden.jpg"), gallery="staff.frg", face_selection="all")
        assert sorted(f["identity"] for f in everyone["faces"] if f["identity"]) == ["biden", "obama"]


def test_errors_are_typed_and_raised_at_once(server: RunningServer) -> None:
    retried: list[tuple[int, str]] = []
    with FaceClient(url(server), api_key="k1", on_retry=lambda n, why: retried.append((n, why))) as faces:
        import numpy as np

        with pytest.raises(NoFaceDetected) as caught:
            faces.embed(encode(np.full((200, 200, 3), 128, np.uint8), ".jpg"))
        assert caught.value.status == 422 and caught.value.request_id
        with pytest.raises(MultipleFacesDetected):
            faces.embed(FACES / "two_people.jpg")
    assert retried == []  # the caller's errors are never retried
    with FaceClient(url(server)) as anonymous, pytest.raises(Unauthorized):
        anonymous.model_info()
    assert {cls.code for cls in api.ERRORS.values()} == {code.value for code in ErrorCode}


def test_service_busy_is_retried_after_retry_after(model_dir: Path, tmp_path: Path) -> None:
    """One request in flight and none waiting: concurrent callers get SERVICE_BUSY
    and the client waits (Retry-After) and tries again until each is answered."""
    with running_server(model_dir, tmp_path, MAX_IN_FLIGHT="1", MAX_QUEUED="0") as busy_server:
        retried: list[str] = []
        results: list[Any] = []

        def caller() -> None:
            with FaceClient(
                url(busy_server), retries=8, on_retry=lambda _n, why: retried.append(why)
            ) as faces:
                results.append(faces.embed(FACES / "obama_3.jpg"))

        threads = [threading.Thread(target=caller) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 4 and all(len(r["embedding"]) == 512 for r in results)
        assert "HTTP 503" in retried


class DroppingProxy:
    """A TCP proxy to the server that closes the first ``drops`` connections
    without a word: a dropped connection, as a load balancer may give."""

    def __init__(self, target_port: int, drops: int = 1) -> None:
        self.target, self.drops = target_port, drops
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.drops > 0:
                self.drops -= 1
                conn.recv(65536)
                conn.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        self.listener.close()


def test_a_dropped_connection_is_retried(server: RunningServer) -> None:
    proxy = DroppingProxy(server.port, drops=1)
    retried: list[str] = []
    try:
        with FaceClient(
            f"http://127.0.0.1:{proxy.port}", api_key="k1", on_retry=lambda _n, why: retried.append(why)
        ) as faces:
            assert len(faces.embed(FACES / "obama_1.jpg")["embedding"]) == 512
    finally:
        proxy.close()
    assert retried and retried[0] in ("RemoteProtocolError", "ReadError", "ConnectError")


def test_nothing_listening_is_unreachable_after_the_retries() -> None:
    from face_recognition_service.testing import free_port

    with (
        FaceClient(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01) as faces,
        pytest.raises(Unreachable),
    ):
        faces.health()


def test_the_async_client(server: RunningServer) -> None:
    async def run() -> tuple[IdentifyResult, EmbedResult]:
        async with AsyncFaceClient(url(server), api_key="k1") as faces:
            who, kit = await asyncio.gather(
                faces.identify(FACES / "rose_leslie_2.jpg", gallery="staff.frg", top_k=2),
                faces.embed(FACES / "kit_harington_1.jpg"),
            )
            return who, kit

    who, kit = asyncio.run(run())
    assert who["identity"] == "rose" and len(who["candidates"]) == 2
    assert len(kit["embedding"]) == 512
    with pytest.raises(FaceServiceError):
        asyncio.run(AsyncFaceClient(url(server)).model_info())
