"""The face-selection policy on its own (engine/selection.py), on detections
written out by hand: which faces count, which are kept, in what order, what a
refusal says. The same policy on real photos: test_faces_and_inputs.py."""

from __future__ import annotations

import numpy as np
import pytest

from face_recognition_service.engine import Detections, FaceOptions, FaceSelection
from face_recognition_service.engine.selection import MAX_FACES, select_faces
from face_recognition_service.errors import ErrorCode, ServiceError


def faces(*boxes: tuple[float, float, float, float]) -> Detections:
    n = len(boxes)
    return Detections(
        np.array(boxes, np.float32).reshape(n, 4),
        np.linspace(0.9, 0.6, n, dtype=np.float32),
        np.zeros((n, 5, 2), np.float32),
    )


# Shorter sides 10, 40 (40 wide, 60 tall) and 30 (60 wide, 30 tall); areas 100,
# 2,400 and 1,800. No box starts where it is as wide as it is tall, so a width
# taken from a y (or a height from an x) gives another answer.
SMALL, TALL, MEDIUM = (0, 5, 10, 15), (100, 120, 140, 180), (200, 300, 260, 330)


def boxes_of(found: Detections) -> list[list[float]]:
    return found.boxes.tolist()  # type: ignore[no-any-return]


def test_all_keeps_every_face_largest_first_and_counts_them() -> None:
    kept, found = select_faces(faces(SMALL, TALL, MEDIUM), FaceOptions(selection=FaceSelection.ALL), 0.5)
    assert boxes_of(kept) == [list(TALL), list(MEDIUM), list(SMALL)] and found == 3
    # The scores and landmarks travel with their boxes.
    assert kept.scores.tolist() == pytest.approx([0.75, 0.6, 0.9])


def test_largest_is_the_one_with_the_biggest_area() -> None:
    kept, found = select_faces(faces(SMALL, MEDIUM, TALL), FaceOptions(selection=FaceSelection.LARGEST), 0.5)
    assert boxes_of(kept) == [list(TALL)] and found == 3


def test_equal_areas_keep_the_detector_order() -> None:
    """40 faces of two sizes, alternating: each size keeps the detector's order."""
    boxes = [(i * 30.0, 0.0, i * 30.0 + (20 if i % 2 else 10), 20.0) for i in range(40)]
    kept, _ = select_faces(faces(*boxes), FaceOptions(selection=FaceSelection.ALL), 0.5)
    expected = [boxes[i] for i in range(1, 40, 2)] + [boxes[i] for i in range(0, 40, 2)]
    assert boxes_of(kept) == [list(b) for b in expected]


@pytest.mark.parametrize(("max_faces", "kept"), [(1, 1), (2, 2), (3, 3), (None, 3)])
def test_max_faces_caps_all_and_the_count_is_before_the_cap(max_faces: int | None, kept: int) -> None:
    options = FaceOptions(selection=FaceSelection.ALL, max_faces=max_faces)
    chosen, found = select_faces(faces(SMALL, TALL, MEDIUM), options, 0.5)
    assert len(chosen) == kept and found == 3


def test_the_cap_is_max_faces_even_when_asked_for_more() -> None:
    many = faces(*[(i * 20.0, 0.0, i * 20.0 + 10 + i % 7, 10.0) for i in range(MAX_FACES + 5)])
    for asked in (None, MAX_FACES + 1):
        chosen, found = select_faces(many, FaceOptions(selection=FaceSelection.ALL, max_faces=asked), 0.5)
        assert len(chosen) == MAX_FACES == 100 and found == 105


@pytest.mark.parametrize(
    ("min_face_size", "counted"), [(0, 3), (10, 3), (11, 2), (30, 2), (31, 1), (40, 1), (41, 0)]
)
def test_min_face_size_counts_faces_whose_shorter_side_reaches_it(min_face_size: int, counted: int) -> None:
    options = FaceOptions(selection=FaceSelection.ALL, min_face_size=min_face_size)
    if counted == 0:
        with pytest.raises(ServiceError) as refused:
            select_faces(faces(SMALL, TALL, MEDIUM), options, 0.5)
        assert refused.value.code is ErrorCode.NO_FACE_DETECTED and refused.value.faces == 0
        assert (
            refused.value.detail
            == "No face scored at least the detection threshold (0.5) and at least 41 px."
        )
        return
    _, found = select_faces(faces(SMALL, TALL, MEDIUM), options, 0.5)
    assert found == counted


def test_single_takes_exactly_one_face() -> None:
    kept, found = select_faces(faces(MEDIUM), FaceOptions(), 0.5)
    assert boxes_of(kept) == [list(MEDIUM)] and found == 1


def test_single_refuses_two_faces_saying_how_many() -> None:
    with pytest.raises(ServiceError) as refused:
        select_faces(faces(SMALL, TALL), FaceOptions(), 0.5)
    error = refused.value
    assert error.code is ErrorCode.MULTIPLE_FACES_DETECTED and error.faces == 2
    assert error.message == "More than one face was detected in the image."
    assert error.detail == (
        "2 faces found; send an image with exactly one face, or ask for face_selection 'largest' or 'all'."
    )


def test_single_with_min_face_size_counts_only_the_faces_that_reach_it() -> None:
    kept, found = select_faces(faces(SMALL, TALL), FaceOptions(min_face_size=11), 0.5)
    assert boxes_of(kept) == [list(TALL)] and found == 1


@pytest.mark.parametrize("selection", list(FaceSelection))
def test_no_face_is_refused_whatever_the_selection(selection: FaceSelection) -> None:
    with pytest.raises(ServiceError) as refused:
        select_faces(faces(), FaceOptions(selection=selection), 0.35)
    assert refused.value.code is ErrorCode.NO_FACE_DETECTED and refused.value.faces == 0
    assert refused.value.message == "No face was detected in the image."
    assert refused.value.detail == "No face scored at least the detection threshold (0.35)."
