"""recipes/pgvector against a real PostgreSQL with pgvector (pgserver: a
PostgreSQL + pgvector build from PyPI, started by this test in a temporary
folder; no Docker, no mock): the schema loads, the query finds the enrolled
person with the service's identification threshold, refuses a stranger, and
agrees with /identify on the same gallery."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from face_recognition_service.config import Settings
from face_recognition_service.engine import FaceEngine, ModelState
from face_recognition_service.gallery.build import build
from face_recognition_service.gallery.cache import GalleryCache
from face_recognition_service.matching import OperatingPoint, decode_embedding, identification_threshold
from face_recognition_service.usecases.identify import IdentifyInput, identify
from face_recognition_service.usecases.verify import Probe
from tests.support.galleries import ENROLLED, distractors, embedding_of, write_jsonl
from tests.support.helpers import ROOT, make_settings

RECIPE = ROOT / "recipes" / "pgvector"
STRANGERS = 5_000


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import pgserver
    import psycopg

    start: Any = pgserver.get_server  # type: ignore[attr-defined]
    server = start(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as connection:
            connection.execute((RECIPE / "schema.sql").read_text())
            yield connection
    finally:
        server.cleanup()


def literal(vector: Any) -> str:
    return "[" + ",".join(f"{float(v):.7g}" for v in vector) + "]"


@pytest.fixture(scope="module")
def enrolled_rows(engine: FaceEngine, settings: Settings) -> list[dict[str, Any]]:
    rows = [
        {"id": person, "embedding": embedding_of(engine, settings, photo).tolist(), "model": engine.model_tag}
        for person, photo in ENROLLED.items()
    ]
    rows += [
        {**row, "embedding": decode_embedding(row["embedding"], "distractor").tolist()}
        for row in distractors(STRANGERS, engine.model_tag)
    ]
    return rows


@pytest.fixture(scope="module")
def filled(database: Any, enrolled_rows: list[dict[str, Any]]) -> Any:
    buffer = io.StringIO()
    for row in enrolled_rows:
        buffer.write(f"{row['id']}\t{row['model']}\t{literal(row['embedding'])}\n")
    with database.cursor().copy("COPY face_templates (person_id, model, embedding) FROM STDIN") as copy:
        copy.write(buffer.getvalue())
    return database


def query(
    connection: Any, probe: np.ndarray, model: str, threshold: float, top_k: int = 5
) -> list[tuple[str, float, bool]]:
    connection.execute("SET hnsw.ef_search = 200")
    params = {
        "probe": literal(probe),
        "model": model,
        "threshold": threshold,
        "top_k": top_k,
        "candidates": 4 * top_k + 16,
    }
    return [
        (str(p), float(s), bool(m))
        for p, s, m in connection.execute((RECIPE / "identify.sql").read_text(), params)
    ]


def test_the_recipe_identifies_with_the_service_s_threshold(
    filled: Any, engine: FaceEngine, settings: Settings
) -> None:
    persons = STRANGERS + len(ENROLLED)
    threshold = identification_threshold("buffalo_sc", OperatingPoint.BALANCED, persons)
    plan = filled.execute(
        "EXPLAIN SELECT 1 FROM face_templates ORDER BY embedding <=> %s::vector LIMIT 5",
        [literal(np.ones(512))],
    ).fetchall()
    assert "face_templates_embedding_hnsw" in " ".join(str(r[0]) for r in plan)  # the HNSW index is used
    found = query(filled, embedding_of(engine, settings, "obama_4.jpg"), engine.model_tag, threshold)
    assert found[0][0] == "barack_obama" and found[0][2] is True
    assert [s for _, s, _ in found] == sorted((s for _, s, _ in found), reverse=True)
    stranger = query(
        filled, embedding_of(engine, settings, "alex_lacamoire_1.jpg"), engine.model_tag, threshold
    )
    assert stranger[0][2] is False
    other_model = query(
        filled, embedding_of(engine, settings, "obama_4.jpg"), "buffalo_l/w600k_r50@00000000", threshold
    )
    assert other_model == []  # another model's embeddings are never compared


def test_the_recipe_agrees_with_identify(
    filled: Any,
    enrolled_rows: list[dict[str, Any]],
    engine: FaceEngine,
    settings: Settings,
    model: ModelState,
    model_dir: Path,
    tmp_path: Path,
) -> None:
    build(write_jsonl(tmp_path / "g.jsonl", enrolled_rows), tmp_path / "g.frg", check_hygiene=False)
    app_settings = make_settings(model_dir, gallery_dir=tmp_path)
    for photo in ("biden_2.jpg", "rose_leslie_2.jpg", "kit_harington_2.jpg"):
        probe = embedding_of(engine, settings, photo)
        service = identify(
            IdentifyInput(gallery="g.frg", probe=Probe(embedding=probe.astype(np.float64))),
            model,
            app_settings,
            GalleryCache(app_settings.galleries),
        )
        database = query(filled, probe, engine.model_tag, service["threshold"])
        assert [c["id"] for c in service["candidates"]][:3] == [p for p, _, _ in database][:3]
        assert service["candidates"][0]["similarity"] == pytest.approx(database[0][1], abs=1e-5)
        assert service["match"] is database[0][2] is True
