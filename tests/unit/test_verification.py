"""/verify and the decisions behind it, on real embeddings of the labelled photos:
defaults that separate every genuine pair from every impostor pair, operating
points, several templates per person, margins, model identity."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from face_recognition_service.engine import FaceEngine
from face_recognition_service.imaging import decode_image
from face_recognition_service.matching import (
    OperatingPoint,
    best_per_id,
    decide,
    encode_embedding,
    operating_points_for,
)
from tests.support.helpers import assert_error, b64, read, single_face_photos, vec

VERIFY = "/api/v1/verify"
COMPARE = "/api/v1/compare"
# Re-encodings of one photo: the same picture, not two photos of a person.
SAME_PHOTO = {frozenset({"obama_1.jpg", "obama_240p.jpg"}), frozenset({"obama_2.jpg", "rgba_32bit.png"})}


@pytest.fixture(scope="module")
def gallery(engine: FaceEngine) -> dict[str, tuple[str, np.ndarray]]:
    return {
        p.name: (p.person, engine.embed_single(decode_image(p.data, 40_000_000)).embedding)
        for p in single_face_photos()
    }


def _pairs(gallery: dict[str, tuple[str, np.ndarray]], same: bool) -> list[tuple[str, str, float]]:
    out = []
    for (a, (pa, va)), (b, (pb, vb)) in itertools.combinations(gallery.items(), 2):
        if frozenset({a, b}) in SAME_PHOTO or (pa == pb) != same:
            continue
        out.append((a, b, float(va @ vb)))
    return out


def _verify(client: TestClient, probe: np.ndarray, refs: list[tuple[str, np.ndarray]], **extra: Any) -> Any:
    body = {
        "embedding": probe.tolist(),
        "references": [{"id": i, "embedding": v.tolist()} for i, v in refs],
        **extra,
    }
    response = client.post(VERIFY, json=body)
    assert response.status_code == 200, response.text
    return response.json()


# The operating points as published (docs/decisions.md#thresholds-and-why-the-old-example-is-replaced, from bench/thresholds.py's
# measurements on the labelled photos): written out here, not read from the code
# under test, so that a changed constant fails a test.
PUBLISHED = {"strict": 0.45, "balanced": 0.36, "lenient": 0.28}


def test_default_threshold_separates_every_labelled_pair(
    client: TestClient, gallery: dict[str, tuple[str, np.ndarray]]
) -> None:
    genuine, impostor = _pairs(gallery, True), _pairs(gallery, False)
    assert len(genuine) >= 15 and len(impostor) >= 80
    for a, b, _ in genuine:
        answer = _verify(client, gallery[a][1], [("them", gallery[b][1])])
        assert answer["match"] is True, (a, b, answer)
        assert answer["operating_point"] == "balanced" and answer["threshold"] == 0.36
    for a, b, _ in impostor:
        assert _verify(client, gallery[a][1], [("them", gallery[b][1])])["match"] is False, (a, b)


def test_strict_never_accepts_an_impostor_and_the_old_example_would_reject_a_genuine_user(
    gallery: dict[str, tuple[str, np.ndarray]], engine: FaceEngine
) -> None:
    strict = PUBLISHED["strict"]
    assert operating_points_for("buffalo_sc")["strict"] == strict
    impostor = _pairs(gallery, False)
    # Group photos: different people within one photo, never the labelled celebrities.
    image = decode_image(read("obama_and_biden.jpg"), 40_000_000)
    faces = engine.embed_faces(image, _all_faces())
    vectors = [f.embedding for f in faces]
    scores = [s for _, _, s in impostor] + [float(a @ b) for a, b in itertools.combinations(vectors, 2)]
    assert max(scores) < strict
    # The replaced example: cosine distance < 0.4, i.e. similarity > 0.6.
    assert min(s for _, _, s in _pairs(gallery, True)) < 0.6


def _all_faces() -> Any:
    from face_recognition_service.engine import FaceOptions, FaceSelection

    return FaceOptions(selection=FaceSelection.ALL)


def test_a_person_enrolled_with_two_photos_is_matched_by_a_third(client: TestClient) -> None:
    refs = []
    for name, person in (
        ("obama_1.jpg", "obama"),
        ("obama_4.jpg", "obama"),
        ("biden_1.jpg", "biden"),
        ("rose_leslie_1.jpg", "rose"),
        ("kit_harington_1.jpg", "kit"),
    ):
        embedded = client.post("/api/v1/embed", json={"image": b64(read(name))}).json()
        refs.append({"id": person, "embedding": embedded["embedding"], "model": embedded["model"]})
    answer = client.post(VERIFY, json={"image": b64(read("obama_3.jpg")), "references": refs}).json()
    assert answer["match"] is True and answer["best_match"]["id"] == "obama", answer
    assert answer["runner_up"]["id"] != "obama"
    assert answer["margin"] == pytest.approx(
        answer["similarity"] - answer["runner_up"]["similarity"], abs=1e-5
    )
    assert answer["ambiguous"] is False and answer["detection_score"] > 0.5
    assert answer["model"] == refs[0]["model"]


def test_operating_points_and_custom_thresholds(
    client: TestClient, gallery: dict[str, tuple[str, np.ndarray]]
) -> None:
    probe, ref = gallery["obama_1.jpg"][1], gallery["obama_4.jpg"][1]
    for point in OperatingPoint:
        answer = _verify(client, probe, [("obama", ref)], operating_point=point.value)
        assert answer["threshold"] == PUBLISHED[point.value] and answer["operating_point"] == point.value
        # The pair's own similarity decides, against the published number.
        assert answer["match"] is (answer["similarity"] >= PUBLISHED[point.value])
    custom = _verify(client, probe, [("obama", ref)], threshold=0.99)
    assert custom == {**custom, "match": False, "threshold": 0.99, "operating_point": "custom"}
    assert custom["runner_up"] is None and custom["margin"] is None and custom["ambiguous"] is False


def test_ambiguity_rule() -> None:
    persons = best_per_id(["a", "b", "a"], np.array([0.70, 0.65, 0.40]))
    assert persons.ids == ["a", "b"] and persons.templates == [2, 1]
    close = decide(persons, 0.36)
    assert close.match and close.ambiguous and close.margin == pytest.approx(0.05)
    clear = decide(best_per_id(["a", "b"], np.array([0.70, 0.59])), 0.36)  # 0.11 apart: past the 0.1 margin
    assert clear.match and not clear.ambiguous
    no_match = decide(best_per_id(["a", "b"], np.array([0.30, 0.29])), 0.36)
    assert not no_match.match and not no_match.ambiguous


def test_base64_references_mix_with_float_lists(
    client: TestClient, gallery: dict[str, tuple[str, np.ndarray]]
) -> None:
    probe = gallery["rose_leslie_2.jpg"][1]
    refs = [("rose", gallery["rose_leslie_1.jpg"][1]), ("kit", gallery["kit_harington_1.jpg"][1])]
    lists = _verify(client, probe, refs)
    body = {
        "embedding": encode_embedding(probe),
        "references": [
            {"id": "rose", "embedding": encode_embedding(refs[0][1])},
            {"id": "kit", "embedding": refs[1][1].tolist()},
        ],
    }
    mixed = client.post(VERIFY, json=body).json()
    assert mixed["best_match"] == {
        **lists["best_match"],
        "similarity": pytest.approx(lists["similarity"], abs=1e-6),
    }


def test_model_mismatch_is_refused(client: TestClient, gallery: dict[str, tuple[str, np.ndarray]]) -> None:
    tag = client.get("/api/v1/model-info").json()["model"]
    probe = gallery["obama_1.jpg"][1].tolist()
    other = {"id": "x", "embedding": probe, "model": "buffalo_l/w600k_r50@00000000"}
    same = {"id": "y", "embedding": probe, "model": tag}
    body = assert_error(
        client.post(VERIFY, json={"image": b64(read("obama_small.jpg")), "references": [same, other]}),
        409,
        "MODEL_MISMATCH",
    )
    assert "buffalo_l/w600k_r50@00000000" in (body["detail"] or "")
    assert_error(
        client.post(VERIFY, json={"embedding": probe, "model": tag, "references": [other]}),
        409,
        "MODEL_MISMATCH",
    )
    compare = {"query_embedding": probe, "query_model": tag, "reference_embeddings": [same, other]}
    assert_error(client.post(COMPARE, json=compare), 409, "MODEL_MISMATCH")
    # Without a probe tag, the references must agree among themselves.
    assert_error(
        client.post(VERIFY, json={"embedding": probe, "references": [same, other]}), 409, "MODEL_MISMATCH"
    )
    assert client.post(VERIFY, json={"embedding": probe, "references": [same]}).status_code == 200


def test_compare_groups_templates_by_id(client: TestClient) -> None:
    refs = [
        {"id": "a", "embedding": vec(1.0, 0.0)},
        {"id": "b", "embedding": vec(0.6, 0.8)},
        {"id": "a", "embedding": vec(0.0, 1.0)},
    ]
    plain = client.post(COMPARE, json={"query_embedding": vec(0.0, 1.0), "reference_embeddings": refs}).json()
    assert [m["id"] for m in plain["matches"]] == ["a", "b", "a"]
    grouped = client.post(
        COMPARE, json={"query_embedding": vec(0.0, 1.0), "reference_embeddings": refs, "group_by_id": True}
    ).json()
    assert [(m["id"], m["templates"]) for m in grouped["matches"]] == [("a", 2), ("b", 1)]
    assert grouped["best_match"]["similarity"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "body",
    [
        {"references": [{"id": "a", "embedding": vec(1.0, 0.0)}]},  # no probe
        {"embedding": vec(1.0, 0.0), "image": "x", "references": [{"id": "a", "embedding": vec(1.0, 0.0)}]},
        {"embedding": vec(1.0, 0.0), "references": []},
        {"embedding": vec(1.0, 0.0), "references": [{"id": "a", "embedding": [1.0]}]},
        {"embedding": "not base64!", "references": [{"id": "a", "embedding": vec(1.0, 0.0)}]},
        {"embedding": vec(1.0, 0.0), "references": [{"id": "a", "embedding": vec(1.0, 0.0)}], "threshold": 2},
        {
            "embedding": vec(1.0, 0.0),
            "references": [{"id": "a", "embedding": vec(1.0, 0.0)}],
            "operating_point": "x",
        },
    ],
)
def test_bad_verify_requests_keep_the_error_shape(client: TestClient, body: dict[str, Any]) -> None:
    assert_error(client.post(VERIFY, json=body), 422, "INVALID_EMBEDDING")


def test_verify_with_a_photo_without_a_face(client: TestClient) -> None:
    from tests.support.helpers import encode, no_face_image

    body = {
        "image": b64(encode(no_face_image(), ".jpg")),
        "references": [{"id": "a", "embedding": [1.0] * 512}],
    }
    assert_error(client.post(VERIFY, json=body), 422, "NO_FACE_DETECTED")


@pytest.mark.parametrize(
    ("tag", "pack"),
    [
        ("buffalo_l/w600k_r50@5e4b4c5a", "buffalo_l"),
        ("buffalo_sc/a/b", "buffalo_sc"),
        ("plain", "plain"),
        (None, "dflt"),
    ],
)
def test_the_pack_of_a_model_tag_is_its_first_part(tag: str | None, pack: str) -> None:
    from face_recognition_service.usecases.verify import pack_of

    assert pack_of(tag, "dflt") == pack


def test_the_answer_names_the_references_model_when_the_probe_has_none(client: TestClient) -> None:
    refs = [{"id": "a", "embedding": vec(1.0), "model": "buffalo_sc/w600k_mbf@1"}]
    answer = client.post(VERIFY, json={"embedding": vec(1.0), "references": refs}).json()
    assert answer["model"] == "buffalo_sc/w600k_mbf@1"
    untagged = client.post(
        VERIFY, json={"embedding": vec(1.0), "references": [{"id": "a", "embedding": vec(1.0)}]}
    )
    assert untagged.json()["model"] is None


def test_scores_are_rounded_to_six_places_and_a_zero_runner_up_stays_zero(client: TestClient) -> None:
    refs = [
        {"id": "a", "embedding": vec(1.0, float(np.sqrt(8)))},  # cos 1/3 with the probe below
        {"id": "b", "embedding": vec(0.0, 0.0, 0.0, 1.0)},  # orthogonal: exactly 0
    ]
    answer = client.post(VERIFY, json={"embedding": vec(1.0), "references": refs, "threshold": 0.3}).json()
    assert answer["similarity"] == 0.333333 and answer["best_match"] == {"id": "a", "similarity": 0.333333}
    assert answer["runner_up"] == {"id": "b", "similarity": 0.0}
    assert answer["margin"] == 0.333333 and answer["match"] is True
    # A runner-up of 1/9 is rounded too.
    refs[1] = {"id": "b", "embedding": vec(1.0, float(np.sqrt(80)))}
    answer = client.post(VERIFY, json={"embedding": vec(1.0), "references": refs, "threshold": 0.3}).json()
    assert answer["runner_up"] == {"id": "b", "similarity": 0.111111}


@pytest.mark.parametrize(
    ("probe", "reference", "says"),
    [
        (vec(1.0), vec(), "The reference embeddings contains a zero vector, which has no direction."),
        (vec(), vec(1.0), "The query embedding contains a zero vector, which has no direction."),
    ],
)
def test_a_zero_vector_is_refused_naming_which(
    client: TestClient, probe: list[float], reference: list[float], says: str
) -> None:
    body = assert_error(
        client.post(VERIFY, json={"embedding": probe, "references": [{"id": "a", "embedding": reference}]}),
        422,
        "INVALID_EMBEDDING",
    )
    assert body["error"] == says


def test_a_model_mismatch_says_which_models_and_how_many(client: TestClient) -> None:
    refs = [
        {"id": "a", "embedding": vec(1.0), "model": "buffalo_l/w600k_r50@2"},
        {"id": "b", "embedding": vec(1.0), "model": "buffalo_l/w600k_r50@2"},
        {"id": "c", "embedding": vec(1.0), "model": "buffalo_s/w600k_mbf@3"},
        {"id": "d", "embedding": vec(1.0)},
        {"id": "e", "embedding": vec(1.0), "model": "buffalo_sc/w600k_mbf@1"},
    ]
    body = assert_error(
        client.post(
            VERIFY, json={"embedding": vec(1.0), "model": "buffalo_sc/w600k_mbf@1", "references": refs}
        ),
        409,
        "MODEL_MISMATCH",
    )
    assert body["error"] == "The embeddings come from different models and cannot be compared."
    assert body["detail"] == (
        "The probe is buffalo_sc/w600k_mbf@1; 3 reference(s) are buffalo_l/w600k_r50@2, buffalo_s/w600k_mbf@3. "
        "Re-enrol those references with the current model."
    )


def test_a_photo_probe_is_its_largest_face_and_all_is_refused(client: TestClient) -> None:
    """A photo probe is one face: with "largest", the face /embed picks, with
    its detection score (and quality when asked); "all" cannot name one person,
    so it is taken as "single": a group photo is MULTIPLE_FACES_DETECTED."""
    group = b64(read("obama_and_biden.jpg"))
    largest = {"image": group, "face_selection": "largest"}
    embedded = client.post("/api/v1/embed", json={**largest, "include": ["quality"]}).json()
    refs = [{"id": "the-largest", "embedding": embedded["embedding"]}]
    answer = client.post(VERIFY, json={**largest, "references": refs, "include": ["quality"]}).json()
    assert answer["match"] is True and answer["similarity"] >= 0.999999
    assert answer["detection_score"] == embedded["detection_score"]
    assert answer["quality"] == embedded["quality"] and answer["quality"]["verdict"]
    plain = client.post(VERIFY, json={**largest, "references": refs}).json()
    assert "quality" not in plain and plain["detection_score"] == answer["detection_score"]
    refused = client.post(VERIFY, json={"image": group, "references": refs, "face_selection": "all"})
    assert_error(refused, 422, "MULTIPLE_FACES_DETECTED")


def test_a_photo_probes_detection_score_is_embeds_to_six_places(client: TestClient) -> None:
    """Five photos: /verify reports each face's detection score as /embed does,
    rounded to six places (no photo's score is exact at six)."""
    for photo in single_face_photos()[:5]:
        image = b64(read(photo.name))
        embedded = client.post("/api/v1/embed", json={"image": image}).json()
        refs = [{"id": "self", "embedding": embedded["embedding"]}]
        answer = client.post(VERIFY, json={"image": image, "references": refs}).json()
        assert answer["detection_score"] == embedded["detection_score"] == round(answer["detection_score"], 6)
