"""The networks' graphs rewritten for ONNX Runtime's CPU kernels
(engine/graph.py): the recogniser's PReLUs and grouped convolutions as
depthwise convolutions, the detector's sibling head convolutions as one. The
same embeddings and detections on real faces; written once beside the pack,
rebuilt in memory where the folder is read-only, and never used when it would
differ."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from face_recognition_service.engine import Detector, FaceEngine, load_model
from face_recognition_service.engine import graph as graph_module
from face_recognition_service.engine.graph import (
    cpu_graph,
    grouped_as_depthwise,
    prelu_as_convolutions,
    rewrite,
    rewritten_path,
    siblings_as_one,
)
from face_recognition_service.engine.runtime import session_options
from face_recognition_service.models import MODEL_PACKS
from tests.support.helpers import FACES, copy_pack, make_settings

PACK = MODEL_PACKS["buffalo_sc"]


def _image(name: str) -> np.ndarray:
    image = cv2.imread(str(FACES / name))
    assert image is not None
    return image


def _attribute(node: onnx.NodeProto, name: str) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), 1)


def _session(model: Path | bytes) -> ort.InferenceSession:
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, session_options(1), providers=["CPUExecutionProvider"])


def _outputs(model: Path | bytes, batch: np.ndarray) -> list[np.ndarray]:
    session = _session(model)
    out: list[np.ndarray] = session.run(None, {session.get_inputs()[0].name: batch})
    return out


def _run(model: Path | bytes, batch: np.ndarray) -> np.ndarray:
    return _outputs(model, batch)[0]


def _face_crops(engine: FaceEngine) -> np.ndarray:
    crops = []
    for name in ("obama_1.jpg", "biden_1.jpg", "rose_leslie_1.jpg", "kit_harington_1.jpg", "two_people.jpg"):
        image = _image(name)
        found = engine.detector.detect(image, 640, 0.5)
        crops += [engine.recognizer.align(image, landmarks) for landmarks in found.landmarks]
    blob: np.ndarray = cv2.dnn.blobFromImages(crops, 1 / 127.5, (112, 112), (127.5,) * 3, swapRB=True)
    return blob


def test_rewritten_recogniser_gives_the_same_embeddings_on_real_faces(
    model_dir: Path, engine: FaceEngine
) -> None:
    original = model_dir / "buffalo_sc" / PACK.recognizer
    model = onnx.load(str(original))
    assert sum(node.op_type == "PRelu" for node in model.graph.node) == 34
    # The stem's grouped 3 x 3 convolution (64 groups of 2), then 35 PReLUs:
    # the 34 and the copy of the stem's that the grouped one needed.
    assert rewrite(model) == 1 + 35
    assert not [node for node in model.graph.node if node.op_type == "PRelu"]
    groups = [_attribute(node, "group") for node in model.graph.node if node.op_type == "Conv"]
    channels = {i.name: list(i.dims) for i in model.graph.initializer}
    assert all(
        g == 1 or channels[node.input[1]][1] == 1
        for g, node in zip(groups, (n for n in model.graph.node if n.op_type == "Conv"), strict=True)
    ), "every convolution is plain or depthwise"
    # The replaced slopes are gone (ONNX Runtime would warn about each one).
    used = {name for node in model.graph.node for name in node.input}
    assert {init.name for init in model.graph.initializer} <= used
    batch = _face_crops(engine)
    assert batch.shape[0] >= 6
    before, after = _run(original, batch), _run(model.SerializeToString(), batch)
    assert np.abs(before - after).max() < 1e-4 * np.abs(before).max()
    cosine = (before * after).sum(1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    assert cosine.min() > 0.99999


def test_rewritten_detector_finds_the_same_faces_on_real_photos(model_dir: Path) -> None:
    original = model_dir / "buffalo_sc" / PACK.detector
    model = onnx.load(str(original))
    convolutions = sum(node.op_type == "Conv" for node in model.graph.node)
    # Each of the three strides' heads: scores, boxes and landmarks in one.
    assert rewrite(model) == 9
    assert sum(node.op_type == "Conv" for node in model.graph.node) == convolutions - 6
    assert sum(node.op_type == "Split" for node in model.graph.node) == 3
    before, after = Detector(_session(original)), Detector(_session(model.SerializeToString()))
    faces = 0
    for name in ("obama_1.jpg", "two_people.jpg", "rose_leslie_1.jpg", "alex_lacamoire_1.jpg"):
        image = _image(name)
        for size in (640, 320):
            a, b = before.detect(image, size, 0.3), after.detect(image, size, 0.3)
            assert len(a) == len(b) > 0
            for x, y in ((a.boxes, b.boxes), (a.scores, b.scores), (a.landmarks, b.landmarks)):
                assert np.allclose(x, y, rtol=1e-6, atol=1e-4), name
            faces += len(a)
    assert faces >= 10


def test_the_service_runs_the_rewritten_graphs_and_embeds_as_before(
    model_dir: Path, engine: FaceEngine
) -> None:
    recogniser = model_dir / "buffalo_sc" / PACK.recognizer
    detector = model_dir / "buffalo_sc" / PACK.detector
    # Written beside the pack when it was provisioned (verify loads them).
    assert rewritten_path(recogniser).is_file() and rewritten_path(detector).is_file()
    assert engine.recognizer.session._model_path == str(rewritten_path(recogniser))
    assert engine.detector.session._model_path == str(rewritten_path(detector))
    plain = FaceEngine.load(model_dir / "buffalo_sc", threads=1, rewrite=False)
    assert plain.recognizer.session._model_path == str(recogniser)
    assert plain.detector.session._model_path == str(detector)
    assert plain.model_tag == engine.model_tag  # the same model: the tag is the original file's
    image = _image("obama_1.jpg")
    a, b = engine.embed_single(image).embedding, plain.embed_single(image).embedding
    assert float(a @ b) > 0.99999


def test_the_setting_turns_it_off(model_dir: Path) -> None:
    state = load_model(make_settings(model_dir, graph_rewrite=False).engine, warm_up=False)
    assert state.engine is not None
    path = state.engine.recognizer.session._model_path
    assert path is not None and Path(path).name == PACK.recognizer


def test_written_once_and_reused(model_dir: Path, tmp_path: Path) -> None:
    pack = copy_pack(model_dir, tmp_path)
    recogniser = pack / PACK.recognizer
    # What an earlier version of the rewrites, or an earlier file, left.
    stale = [pack / ".w600k_mbf.onnx.0123456789abcdef.cpu2.onnx", pack / ".w600k_mbf.onnx.0123.cpu2.none"]
    for path in stale:
        path.write_bytes(b"")
    first = cpu_graph(recogniser)
    assert first == rewritten_path(recogniser) and isinstance(first, Path)
    assert not any(path.exists() for path in stale), "nothing loads them any more"
    assert first.name.startswith(".w600k_mbf.onnx.") and first.name.endswith(".cpu3.onnx")
    # Readable by whoever can read the original (an image built as root, run as another user).
    assert first.stat().st_mode & 0o777 == recogniser.stat().st_mode & 0o777
    written = first.stat().st_mtime_ns
    assert cpu_graph(recogniser) == first
    assert first.stat().st_mtime_ns == written
    # A changed recogniser file gets its own rewritten graph (the name carries its digest).
    with recogniser.open("ab") as fh:
        fh.write(b"\0")
    assert rewritten_path(recogniser) != first


def test_a_graph_with_nothing_to_rewrite_is_parsed_once(tmp_path: Path) -> None:
    plain = tmp_path / "plain.onnx"
    onnx.save(_siblings([16, 16]), str(plain))  # whole blocks: nothing to gain
    earlier = tmp_path / ".plain.onnx.0123456789abcdef.cpu2.none"
    earlier.write_bytes(b"")
    assert cpu_graph(plain) == plain
    assert not earlier.exists()
    assert len(list(tmp_path.glob(".plain.onnx.*.none"))) == 1
    assert not list(tmp_path.glob(".plain.onnx.*.cpu3.onnx"))
    assert cpu_graph(plain) == plain


def test_read_only_model_folder_gets_the_graph_in_memory(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = copy_pack(model_dir, tmp_path)

    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(30, "Read-only file system")  # as on a Lambda image

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    recogniser = pack / PACK.recognizer
    graph = cpu_graph(recogniser)
    assert isinstance(graph, bytes)
    assert not rewritten_path(recogniser).exists()
    engine = FaceEngine.load(pack, threads=1)
    assert engine.recognizer.session._model_path is None  # loaded from bytes
    image = _image("biden_1.jpg")
    reference = FaceEngine.load(model_dir / "buffalo_sc", threads=1, rewrite=False)
    assert float(engine.embed_single(image).embedding @ reference.embed_single(image).embedding) > 0.99999


def test_a_rewrite_that_changes_the_outputs_is_not_used(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = copy_pack(model_dir, tmp_path)
    original = graph_module.prelu_as_convolutions

    def wrong(model: onnx.ModelProto) -> int:
        count = original(model)
        for init in model.graph.initializer:  # every slope off by a little
            if init.name.endswith("/prelu_keep"):
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 0.5, init.name))
        return count

    monkeypatch.setattr(graph_module, "prelu_as_convolutions", wrong)
    recogniser = pack / PACK.recognizer
    assert cpu_graph(recogniser) == recogniser
    assert not rewritten_path(recogniser).exists()


def _tiny(slope: np.ndarray, input_shape: list[int]) -> onnx.ModelProto:
    """x -> Conv (1x1, 4 -> 4 channels) -> PRelu(slope) -> y."""
    rng = np.random.default_rng(3)
    weights = numpy_helper.from_array(rng.normal(size=(4, 4, 1, 1)).astype(np.float32), "w")
    slope_init = numpy_helper.from_array(slope.astype(np.float32), "slope")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("PRelu", ["c", "slope"], ["y"]),
    ]
    return _model("tiny", nodes, input_shape, ["y"], [weights, slope_init])


def _model(
    name: str,
    nodes: list[onnx.NodeProto],
    input_shape: list[int],
    outputs: list[str],
    initializers: list[onnx.TensorProto],
    opset: int = 13,
) -> onnx.ModelProto:
    """A model of ``nodes`` with one float input ``x`` and float ``outputs``."""
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None) for output in outputs],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("shape", [(4, 1, 1), (1, 4, 1, 1)])
def test_per_channel_slopes_of_any_sign_are_rewritten_exactly(shape: tuple[int, ...]) -> None:
    slope = np.array([-0.8, 0.0, 0.25, 1.5], np.float32).reshape(shape)
    model = _tiny(slope, [2, 4, 5, 6])
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 6)).astype(np.float32)
    before = _run(model.SerializeToString(), x)
    assert prelu_as_convolutions(model) == 1
    after = _run(model.SerializeToString(), x)
    assert np.allclose(before, after, rtol=1e-6, atol=1e-6)
    assert (before < 0).any() and (before > 0).any()


@pytest.mark.parametrize(
    ("slope", "why"),
    [
        (np.array([0.25], np.float32), "one slope for every channel"),
        (np.full((6,), 0.25, np.float32), "a slope per column (broadcast over the last axis)"),
    ],
)
def test_other_slopes_are_left_alone(slope: np.ndarray, why: str) -> None:
    model = _tiny(slope, [2, 4, 5, 6])
    assert prelu_as_convolutions(model) == 0, why
    assert [node.op_type for node in model.graph.node] == ["Conv", "PRelu"]


def _grouped(k: int, groups: int, prelu: bool, stem_used_twice: bool = False) -> onnx.ModelProto:
    """x -> Conv (3 -> C, 3x3) [-> PRelu] -> Conv (C -> C, ``groups`` groups of
    ``k``, 3x3, stride 2) -> y; optionally the stem's output is a second output too."""
    rng = np.random.default_rng(k)
    channels = k * groups
    inits = [
        numpy_helper.from_array(rng.normal(size=(channels, 3, 3, 3)).astype(np.float32), "w0"),
        numpy_helper.from_array(rng.normal(size=(channels,)).astype(np.float32), "b0"),
        numpy_helper.from_array(rng.uniform(-1, 1, size=(channels, 1, 1)).astype(np.float32), "s0"),
        numpy_helper.from_array(rng.normal(size=(channels, k, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(size=(channels,)).astype(np.float32), "b1"),
    ]
    stem = "a" if prelu else "c"
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    if prelu:
        nodes.append(helper.make_node("PRelu", ["c", "s0"], ["a"]))
    nodes.append(
        helper.make_node(
            "Conv",
            [stem, "w1", "b1"],
            ["y"],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            strides=[2, 2],
            group=groups,
        )
    )
    return _model("grouped", nodes, [1, 3, 12, 10], ["y", stem] if stem_used_twice else ["y"], inits)


@pytest.mark.parametrize(("k", "groups", "prelu"), [(2, 4, True), (2, 8, False), (3, 5, True), (4, 2, False)])
def test_grouped_convolutions_become_depthwise_ones_with_the_same_outputs(
    k: int, groups: int, prelu: bool
) -> None:
    model = _grouped(k, groups, prelu)
    x = np.random.default_rng(1).normal(size=(1, 3, 12, 10)).astype(np.float32)
    before = _run(model.SerializeToString(), x)
    assert grouped_as_depthwise(model) == 1
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 * k  # the stem, k - 1 rotated copies of it, k depthwise
    assert sum(n.op_type == "PRelu" for n in model.graph.node) == (k if prelu else 0)
    after = _run(model.SerializeToString(), x)
    assert np.allclose(before, after, rtol=1e-5, atol=1e-5 * float(np.abs(before).max()))


def test_a_grouped_convolution_whose_input_is_used_elsewhere_is_left_alone() -> None:
    model = _grouped(2, 4, prelu=True, stem_used_twice=True)
    assert grouped_as_depthwise(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Conv", "PRelu", "Conv"]


def _siblings(
    channels: list[int], *, opset: int = 13, strides: list[list[int]] | None = None, biases: bool = True
) -> onnx.ModelProto:
    """x -> Relu -> one 3x3 convolution per entry of ``channels`` (8 input
    channels), each output a graph output; the i-th with ``strides[i]``."""
    rng = np.random.default_rng(len(channels))
    inits, nodes, outputs = [], [helper.make_node("Relu", ["x"], ["r"])], []
    for i, count in enumerate(channels):
        inits.append(numpy_helper.from_array(rng.normal(size=(count, 8, 3, 3)).astype(np.float32), f"w{i}"))
        inputs = ["r", f"w{i}"]
        if biases and i % 2 == 0:
            inits.append(numpy_helper.from_array(rng.normal(size=(count,)).astype(np.float32), f"b{i}"))
            inputs.append(f"b{i}")
        stride = strides[i] if strides else [1, 1]
        nodes.append(
            helper.make_node(
                "Conv", inputs, [f"y{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=stride
            )
        )
        outputs.append(f"y{i}")
    return _model("siblings", nodes, [1, 8, 10, 12], outputs, inits, opset)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("biases", [True, False])
def test_sibling_convolutions_become_one_with_the_same_outputs(opset: int, biases: bool) -> None:
    model = _siblings([2, 8, 20], opset=opset, biases=biases)
    x = np.random.default_rng(2).normal(size=(1, 8, 10, 12)).astype(np.float32)
    before = _outputs(model.SerializeToString(), x)
    assert siblings_as_one(model) == 3
    assert [n.op_type for n in model.graph.node] == ["Relu", "Conv", "Split"]
    after = _outputs(model.SerializeToString(), x)
    assert [a.shape for a in after] == [(1, 2, 10, 12), (1, 8, 10, 12), (1, 20, 10, 12)]
    for a, b in zip(before, after, strict=True):
        assert np.allclose(a, b, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize(
    ("channels", "strides", "why"),
    [
        ([16, 32], None, "whole channel blocks already: stacking saves nothing"),
        ([2, 8], [[1, 1], [2, 2]], "different strides: not the same operation over the input"),
        ([4], None, "no sibling"),
    ],
)
def test_other_convolutions_are_left_alone(
    channels: list[int], strides: list[list[int]] | None, why: str
) -> None:
    model = _siblings(channels, strides=strides)
    assert siblings_as_one(model) == 0, why
    assert [n.op_type for n in model.graph.node] == ["Relu", *["Conv"] * len(channels)]


@pytest.mark.parametrize(
    ("providers", "rewritten"),
    [
        (["CPUExecutionProvider"], True),
        (["CUDAExecutionProvider", "CPUExecutionProvider"], False),
        (["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], False),
    ],
)
def test_only_a_cpu_session_gets_the_cpu_rewritten_graph(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, providers: list[str], rewritten: bool
) -> None:
    """The rewrite is tuned for ONNX Runtime's CPU kernels: a CUDA session,
    whose list ends with the CPU as its fallback, opens the file as it is.
    (The session opening is stubbed at its boundary: no GPU here.)"""
    opened: list[object] = []
    monkeypatch.setattr(graph_module, "cpu_graph", lambda path: b"rewritten graph")
    monkeypatch.setattr(graph_module, "open_session", lambda path, prov, threads, graph: opened.append(graph))
    graph_module.open_rewritten(tmp_path / "model.onnx", providers, 1)
    assert opened == [b"rewritten graph" if rewritten else None]
