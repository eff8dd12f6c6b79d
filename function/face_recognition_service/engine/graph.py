"""The recogniser's graph with each PReLU written as depthwise convolutions:
the same function, in the layout ONNX Runtime's CPU kernels run fastest.

ArcFace's recognisers (MobileFaceNet in buffalo_sc, IResNet in buffalo_l) put a
PReLU after most convolutions. ONNX Runtime's CPU provider runs convolutions in
a blocked channel layout (NCHWc) and fuses Relu into them, but it has no
blocked PReLU: each of w600k_mbf's 34 PReLUs converts its input back to NCHW,
runs a generic broadcasting kernel and converts back. Measured on 2 cores:
PReLU was 38 % of the recogniser's time and those conversions another 20 %.

Per channel c with slope s_c, PReLU(y) = y + (1 - s_c) * relu(-y): for y >= 0
the second term is 0; for y < 0 it is y - (1 - s_c) * y = s_c * y. Both
scalings are depthwise 1 x 1 convolutions (weights -1 and 1 - s_c), the relu is
fused into the first and the add into the second, so the whole block stays in
the blocked layout. Only float rounding differs (embeddings within 4e-6 of the
original graph's, cosine 0.9999999; tests/unit/test_engine_graph.py).

The rewritten graph is written once beside the original (hidden, its name
carrying the original's SHA-256 and REWRITE_VERSION), at provisioning or image
build time, or at the first start; a read-only folder gets it rebuilt in memory
at each start instead (~0.15 s, mostly importing ``onnx``). The model tag
stays the original file's: the embeddings are the same model's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..models.tag import file_digest
from .runtime import session_options

if TYPE_CHECKING:  # onnx is imported only when a graph has to be rewritten
    import onnx

logger = logging.getLogger(__name__)

# Part of the rewritten file's name: a change to the rewrite writes a new file.
REWRITE_VERSION = 1


def rewritten_path(path: Path) -> Path:
    """Where the rewritten graph of the model file ``path`` is kept."""
    return path.with_name(f".{path.name}.{file_digest(path)[:16]}.prelu{REWRITE_VERSION}.onnx")


def _unchanged_marker(path: Path) -> Path:
    """Written when ``path`` has no PReLU to rewrite, so later starts need not parse it."""
    return path.with_name(f".{path.name}.{file_digest(path)[:16]}.prelu{REWRITE_VERSION}.none")


def cpu_graph(path: Path) -> Path | bytes:
    """What ONNX Runtime's CPU provider should load for the model at ``path``:
    the rewritten graph's file (written now if missing), the rewritten graph's
    bytes when the folder cannot be written, or ``path`` itself when it has no
    PReLU to rewrite or cannot be rewritten."""
    target, marker = rewritten_path(path), _unchanged_marker(path)
    if target.is_file():
        return target
    if marker.is_file():
        return path
    try:
        import onnx

        model = onnx.load(str(path))
        rewritten = prelu_as_convolutions(model)
        data = model.SerializeToString() if rewritten else b""
        if rewritten and not same_outputs(path, data):
            raise ValueError("its outputs differ from the original's")
    except Exception as exc:  # noqa: BLE001 - onnx and onnxruntime raise several unrelated types
        logger.warning("%s: graph not rewritten (%s); using it as it is", path.name, exc)
        return path
    if rewritten == 0:
        with contextlib.suppress(OSError):
            marker.touch()
        return path
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            # Readable by whoever can read the original (mkstemp makes it 0600):
            # an image built as root is run as another user.
            os.chmod(temporary, path.stat().st_mode & 0o777)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        logger.warning(
            "%s: PReLUs rewritten in memory; the model folder is not writable (%s), so every "
            "start repeats it (provision the pack where it can write to keep the result)",
            path.name,
            exc.strerror or exc,
        )
        return data
    logger.info("%s: %d PReLUs rewritten as convolutions in %s", path.name, rewritten, target.name)
    return target


def same_outputs(original: Path, rewritten: bytes) -> bool:
    """Whether both graphs give the same outputs (to float rounding) for one
    fixed input: a batch of 2 random images, symbolic sizes taken as 112."""
    import onnxruntime as ort

    cpu = ["CPUExecutionProvider"]
    first = ort.InferenceSession(str(original), session_options(1), providers=cpu)
    second = ort.InferenceSession(rewritten, session_options(1), providers=cpu)
    feeds = {}
    for i, spec in enumerate(first.get_inputs()):
        shape = [d if isinstance(d, int) else (2 if j == 0 else 112) for j, d in enumerate(spec.shape)]
        feeds[spec.name] = np.random.default_rng(i).uniform(-1.0, 1.0, shape).astype(np.float32)
    for a, b in zip(first.run(None, feeds), second.run(None, feeds), strict=True):
        scale = max(1.0, float(np.abs(a).max()))
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-3, atol=1e-4 * scale):
            return False
    return True


def prelu_as_convolutions(model: onnx.ModelProto) -> int:
    """Rewrite ``model`` in place: every PReLU over a 4-d tensor whose slope is
    a constant per channel, shape (C, 1, 1) or (1, C, 1, 1), becomes
    ``y + Conv_{1 - s}(Relu(Conv_{-1}(y)))`` with depthwise 1 x 1 convolutions.
    Returns how many were rewritten (other PReLUs are left as they are)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    ranks = _ranks(model)
    nodes: list[onnx.NodeProto] = []
    replaced_slopes: set[str] = set()
    rewritten = 0
    for node in graph.node:
        slope_name = node.input[1] if node.op_type == "PRelu" and len(node.input) == 2 else ""
        slope = initializers.get(slope_name)
        channels = _channel_slopes(numpy_helper.to_array(slope)) if slope is not None else None
        if channels is None or ranks.get(node.input[0]) != 4:
            nodes.append(node)
            continue
        y, out = node.input[0], node.output[0]
        count = channels.size
        negate = numpy_helper.from_array(np.full((count, 1, 1, 1), -1.0, np.float32), f"{out}/prelu_negate")
        keep = numpy_helper.from_array(
            (1.0 - channels).reshape(count, 1, 1, 1).astype(np.float32), f"{out}/prelu_keep"
        )
        graph.initializer.extend([negate, keep])
        negated, negative_part, scaled = f"{out}/prelu_neg", f"{out}/prelu_relu", f"{out}/prelu_scaled"
        nodes += [
            helper.make_node(
                "Conv",
                [y, negate.name],
                [negated],
                name=f"{out}/prelu_conv_negate",
                group=count,
                kernel_shape=[1, 1],
            ),
            helper.make_node("Relu", [negated], [negative_part], name=f"{out}/prelu_relu"),
            helper.make_node(
                "Conv",
                [negative_part, keep.name],
                [scaled],
                name=f"{out}/prelu_conv_keep",
                group=count,
                kernel_shape=[1, 1],
            ),
            helper.make_node("Add", [y, scaled], [out], name=f"{out}/prelu_add"),
        ]
        replaced_slopes.add(slope_name)
        rewritten += 1
    if rewritten:
        still_used = {name for node in nodes for name in node.input}
        kept = [
            init for init in graph.initializer if init.name not in replaced_slopes or init.name in still_used
        ]
        del graph.initializer[:]
        graph.initializer.extend(kept)
        del graph.node[:]
        graph.node.extend(nodes)
    return rewritten


def _channel_slopes(slope: np.ndarray) -> np.ndarray | None:
    """The per-channel slopes of a PReLU slope tensor that broadcasts over NCHW's
    channel axis only, else None (a scalar or a per-column slope is left alone)."""
    if slope.dtype != np.float32 or slope.size < 2:
        return None
    if slope.ndim == 3 and slope.shape[1:] == (1, 1):
        return slope.reshape(-1)
    if slope.ndim == 4 and slope.shape[0] == 1 and slope.shape[2:] == (1, 1):
        return slope.reshape(-1)
    return None


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Every tensor's rank where ONNX's shape inference knows it."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    return {
        value.name: len(value.type.tensor_type.shape.dim)
        for value in values
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape")
    }
