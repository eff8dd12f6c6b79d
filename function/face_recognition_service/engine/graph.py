"""The networks' graphs rewritten for ONNX Runtime's CPU kernels: the same
functions, in operations its blocked layout runs without leaving it or
padding them.

ONNX Runtime's CPU provider runs convolutions in a blocked channel layout
(NCHWc: blocks of 16 channels with AVX-512) and fuses Relu and an add into
them. Two kinds of operation in ArcFace's recognisers fall outside it, and
each costs a conversion to plain NCHW and back besides its own generic kernel:

- **PReLU**, after most convolutions of MobileFaceNet (buffalo_sc) and IResNet
  (buffalo_l). In w600k_mbf's 34 PReLUs, measured on 2 cores: 38 % of the
  recogniser's time, and the conversions another 20 %. Per channel c with
  slope s_c, PReLU(y) = y + (1 - s_c) * relu(-y) (for y >= 0 the second term is
  0; for y < 0 it is y - (1 - s_c) * y = s_c * y): two depthwise 1 x 1
  convolutions, weights -1 and 1 - s_c, the relu fused into the first and the
  add into the second (``prelu_as_convolutions``).
- **A grouped convolution of k > 1 channels a group** (w600k_mbf's second
  layer: 64 groups of 2 channels, 3 x 3, at 56 x 56; 12 % of the recogniser
  after the PReLUs). Output channel j of group g sums input channel (j + r)
  mod k of its group over r = 0..k-1: k depthwise convolutions, the r-th over
  the input with each group's channels rotated by r. The rotated inputs come
  from copies of the convolution (and PReLU) that produced the input, with
  their output channels permuted (``grouped_as_depthwise``): for w600k_mbf,
  one more 3 -> 128 stem convolution.

Together: the recogniser runs in 3.8 instead of 7.8-8.3 ms on 2 threads, 6.4
instead of 12.2 on one (a session of its own, ONNX Runtime's defaults). Only
float rounding differs (embeddings within 4e-6 of the original graph's,
cosine 0.9999999; tests/unit/test_engine_graph.py).

And one in SCRFD, the detector:

- **Sibling convolutions with few output channels.** At each stride its head
  runs three 3 x 3 convolutions over the same 64 channels: scores (2 output
  channels), boxes (8) and landmarks (20). Each is computed in whole blocks,
  16 + 16 + 32 channels for 30. Stacked into one convolution of 30 (32)
  channels and split (``siblings_as_one``), the detector runs 12-15 % faster;
  every output channel is the same dot product as before, so its outputs are
  bit for bit the same.

A rewritten graph is written once beside the original (hidden, its name
carrying the original's SHA-256 and REWRITE_VERSION), at provisioning or image
build time, or at the first start, each time only after its outputs are
checked against the original's; a read-only folder gets it rebuilt in memory
at each start instead (both networks: 0.37-0.43 s on the AMD EPYC of
BENCHMARKS "Round three, second lever", importing ``onnx`` included). The
model tag stays the original file's: the embeddings are the same model's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..models.tag import file_digest
from .runtime import open_session, session_options

if TYPE_CHECKING:  # onnx is imported only when a graph has to be rewritten
    import onnx
    import onnxruntime as ort

logger = logging.getLogger(__name__)

# Part of the rewritten file's name: a change to the rewrites writes a new file.
REWRITE_VERSION = 3


def rewritten_path(path: Path) -> Path:
    """Where the rewritten graph of the model file ``path`` is kept."""
    return path.with_name(f".{path.name}.{file_digest(path)[:16]}.cpu{REWRITE_VERSION}.onnx")


def _unchanged_marker(target: Path) -> Path:
    """Beside ``target`` (``rewritten_path``), written when the model has nothing
    to rewrite, so later starts need not parse it."""
    return target.with_suffix(".none")


def cpu_graph(path: Path) -> Path | bytes:
    """What ONNX Runtime's CPU provider should load for the model at ``path``:
    the rewritten graph's file (written now if missing), the rewritten graph's
    bytes when the folder cannot be written, or ``path`` itself when it has
    nothing to rewrite or cannot be rewritten."""
    target = rewritten_path(path)
    marker = _unchanged_marker(target)
    if target.is_file():
        return target
    if marker.is_file():
        return path
    try:
        import onnx

        model = onnx.load(str(path))
        rewritten = rewrite(model)
        data = model.SerializeToString() if rewritten else b""
        if rewritten and not same_outputs(path, data):
            raise ValueError("its outputs differ from the original's")
    except Exception as exc:  # noqa: BLE001 - onnx and onnxruntime raise several unrelated types
        logger.warning("%s: graph not rewritten (%s); using it as it is", path.name, exc)
        return path
    if rewritten == 0:
        with contextlib.suppress(OSError):
            marker.touch()
            _remove_stale(path, marker)
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
            "%s: graph rewritten in memory; the model folder is not writable (%s), so every "
            "start repeats it (provision the pack where it can write to keep the result)",
            path.name,
            exc.strerror or exc,
        )
        return data
    logger.info("%s: %d operations rewritten in %s", path.name, rewritten, target.name)
    _remove_stale(path, target)
    return target


def _remove_stale(path: Path, kept: Path) -> None:
    """Earlier rewrites of ``path`` (another REWRITE_VERSION or another file's
    digest) and their markers, all but ``kept``: nothing loads them any more."""
    for stale in path.parent.glob(f".{path.name}.*.cpu*"):
        if stale != kept and stale.suffix in (".onnx", ".none"):
            with contextlib.suppress(OSError):
                stale.unlink()


def open_rewritten(
    path: Path, providers: list[str], threads: int, rewrite: bool = True
) -> ort.InferenceSession:
    """A session for the model at ``path``, on the CPU its rewritten graph
    (``cpu_graph``) unless ``rewrite`` is off; other providers get the file as it is."""
    cpu = providers[0] == "CPUExecutionProvider"
    return open_session(path, providers, threads, cpu_graph(path) if rewrite and cpu else None)


def same_outputs(original: Path, rewritten: bytes) -> bool:
    """Whether both graphs give the same outputs (to float rounding) for one
    fixed input: a batch of 2 random images, symbolic sizes taken as 128 (a
    detector's input: a multiple of its coarsest stride)."""
    import onnxruntime as ort

    cpu = ["CPUExecutionProvider"]
    first = ort.InferenceSession(str(original), session_options(1), providers=cpu)
    second = ort.InferenceSession(rewritten, session_options(1), providers=cpu)
    feeds = {}
    for i, spec in enumerate(first.get_inputs()):
        shape = [d if isinstance(d, int) else (2 if j == 0 else 128) for j, d in enumerate(spec.shape)]
        feeds[spec.name] = np.random.default_rng(i).uniform(-1.0, 1.0, shape).astype(np.float32)
    for a, b in zip(first.run(None, feeds), second.run(None, feeds), strict=True):
        scale = max(1.0, float(np.abs(a).max()))
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-3, atol=1e-4 * scale):
            return False
    return True


def rewrite(model: onnx.ModelProto) -> int:
    """Every rewrite, in place (grouped convolutions first: their copies of a
    PReLU are then rewritten too); how many operations were rewritten."""
    return grouped_as_depthwise(model) + prelu_as_convolutions(model) + siblings_as_one(model)


# ONNX Runtime's blocked layout holds channels in blocks of 16 with AVX-512 (8
# with AVX2): a convolution with 2 output channels computes 16.
CHANNEL_BLOCK = 16


def _blocks(channels: int) -> int:
    return -(-channels // CHANNEL_BLOCK)


def siblings_as_one(model: onnx.ModelProto) -> int:
    """Rewrite ``model`` in place: plain convolutions (group 1, constant weights
    and biases) that read the same tensor with the same attributes become one
    convolution with their kernels stacked, and a Split into their outputs,
    where the stacked output channels fill fewer of ONNX Runtime's channel
    blocks than the separate ones do. Returns how many convolutions were merged."""
    editor = _GraphEditor(model)
    families: dict[tuple[str, str], list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        if editor.plain_convolution(node):
            key = (node.input[0], repr(sorted(editor.attributes(node).items())))
            families.setdefault(key, []).append(node)
    merged: dict[str, list[onnx.NodeProto]] = {}
    for family in families.values():
        counts = [editor.weights(node).shape[0] for node in family]
        if len(family) > 1 and sum(map(_blocks, counts)) > _blocks(sum(counts)):
            merged[family[0].output[0]] = family
    if not merged:
        return 0
    gone = {node.output[0] for family in merged.values() for node in family[1:]}
    split_as_input = _opset(model) >= 13
    nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        output = node.output[0] if node.output else ""
        siblings = merged.get(output)
        if siblings is None:
            if output not in gone:
                nodes.append(node)
            continue
        name = f"{output}/siblings"
        kernels = [editor.weights(n) for n in siblings]
        counts = [int(k.shape[0]) for k in kernels]
        inputs = [node.input[0], editor.constant_input(np.concatenate(kernels), f"{name}_w")]
        if any(len(n.input) > 2 and n.input[2] for n in siblings):
            biases = [editor.bias(n, count) for n, count in zip(siblings, counts, strict=True)]
            inputs.append(editor.constant_input(np.concatenate(biases), f"{name}_b"))
        nodes.append(editor.node("Conv", inputs, name, **editor.attributes(node)))
        nodes.append(editor.split(name, [n.output[0] for n in siblings], counts, split_as_input))
    editor.replace_nodes(nodes)
    return sum(len(family) for family in merged.values())


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def grouped_as_depthwise(model: onnx.ModelProto) -> int:
    """Rewrite ``model`` in place: every convolution with k = 2-4 input and
    output channels a group whose input is a plain convolution's output (with or
    without a per-channel PReLU between, neither used elsewhere) becomes k
    depthwise convolutions summed, the r-th over a copy of that input with each
    group's channels rotated by r. Returns how many were rewritten."""
    editor = _GraphEditor(model)
    nodes: list[onnx.NodeProto] = []
    rewritten = 0
    for node in model.graph.node:
        found = editor.grouped(node)
        if found is None:
            nodes.append(node)
            continue
        weights, (conv, prelu) = found
        k, channels, out = weights.shape[1], weights.shape[0], node.output[0]
        position = np.arange(channels) % k
        depthwise = {**editor.attributes(node), "group": channels}
        terms: list[str] = []
        for r in range(k):
            # Channel (j + r) mod k of each group, for channel j of the group.
            rotated = np.arange(channels) - position + (position + r) % k
            source = (
                editor.rotated_copy(conv, prelu, rotated, f"{out}/rotate{r}", nodes) if r else node.input[0]
            )
            kernel = editor.constant_input(
                weights[np.arange(channels), (position + r) % k][:, None], f"{out}/dw{r}_w"
            )
            bias = list(node.input[2:3]) if r == 0 else []
            nodes.append(editor.node("Conv", [source, kernel, *bias], f"{out}/dw{r}", **depthwise))
            terms.append(f"{out}/dw{r}")
        total = terms[0]
        for i, term in enumerate(terms[1:], 1):
            name = out if i == k - 1 else f"{out}/sum{i}"
            nodes.append(editor.node("Add", [total, term], name))
            total = name
        rewritten += 1
    if rewritten:
        editor.replace_nodes(nodes)
    return rewritten


class _GraphEditor:
    """What the rewrites need to know about a graph and add to it."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.initializers = {init.name: init for init in self.graph.initializer}
        self.producers = {name: node for node in self.graph.node for name in node.output}
        self.uses: dict[str, int] = {}
        for name in [
            *(n for node in self.graph.node for n in node.input),
            *(o.name for o in self.graph.output),
        ]:
            self.uses[name] = self.uses.get(name, 0) + 1

    def constant(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        init = self.initializers.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def constant_input(self, array: np.ndarray, name: str) -> str:
        from onnx import numpy_helper

        value = array if array.dtype.kind in "iu" else array.astype(np.float32)
        self.graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    @staticmethod
    def attributes(node: onnx.NodeProto) -> dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    @staticmethod
    def node(op: str, inputs: list[str], output: str, **attributes: Any) -> onnx.NodeProto:
        from onnx import helper

        return helper.make_node(op, inputs, [output], name=output, **attributes)

    def plain_convolution(self, node: onnx.NodeProto) -> bool:
        """A convolution of one group with constant weights (and bias)."""
        if node.op_type != "Conv" or len(node.input) < 2 or int(self.attributes(node).get("group", 1)) != 1:
            return False
        weights = self.constant(node.input[1])
        if weights is None or weights.ndim != 4:
            return False
        return len(node.input) < 3 or not node.input[2] or self.constant(node.input[2]) is not None

    def weights(self, node: onnx.NodeProto) -> np.ndarray:
        """A convolution's constant weights (``plain_convolution`` checked them)."""
        weights = self.constant(node.input[1])
        assert weights is not None
        return weights

    def bias(self, node: onnx.NodeProto, channels: int) -> np.ndarray:
        """A convolution's constant bias, zeros where it has none."""
        bias = self.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return np.zeros(channels, np.float32) if bias is None else bias

    def split(self, tensor: str, outputs: list[str], sizes: list[int], as_input: bool) -> onnx.NodeProto:
        """``tensor`` split along channels into ``outputs`` of ``sizes`` channels
        (opset 13 on takes the sizes as an input, earlier as an attribute)."""
        from onnx import helper

        name = f"{tensor}/split"
        if as_input:
            sizes_name = self.constant_input(np.array(sizes, np.int64), f"{name}_sizes")
            return helper.make_node("Split", [tensor, sizes_name], outputs, name=name, axis=1)
        return helper.make_node("Split", [tensor], outputs, name=name, axis=1, split=sizes)

    def grouped(
        self, node: onnx.NodeProto
    ) -> tuple[np.ndarray, tuple[onnx.NodeProto, onnx.NodeProto | None]] | None:
        """The weights of ``node`` and the chain that makes its input, when it is
        a grouped convolution ``grouped_as_depthwise`` rewrites."""
        if node.op_type != "Conv" or len(node.input) < 2:
            return None
        weights = self.constant(node.input[1])
        groups = int(self.attributes(node).get("group", 1))
        if weights is None or weights.ndim != 4 or groups < 2 or not 2 <= weights.shape[1] <= 4:
            return None
        if weights.shape[0] != groups * weights.shape[1]:  # as many outputs as inputs a group
            return None
        if len(node.input) > 2 and self.constant(node.input[2]) is None:
            return None
        chain = self.producer_chain(node.input[0])
        return None if chain is None else (weights, chain)

    def producer_chain(self, name: str) -> tuple[onnx.NodeProto, onnx.NodeProto | None] | None:
        """The plain convolution (group 1, constant weights and bias) that makes
        ``name``, and the per-channel PReLU between them if any, when neither
        output is used anywhere else; else None."""
        prelu = None
        node = self.producers.get(name)
        if node is not None and node.op_type == "PRelu" and self.uses.get(name) == 1:
            slope = self.constant(node.input[1]) if len(node.input) == 2 else None
            if slope is None or _channel_slopes(slope) is None:
                return None
            prelu, name = node, node.input[0]
            node = self.producers.get(name)
        if node is None or self.uses.get(name) != 1 or not self.plain_convolution(node):
            return None
        return node, prelu

    def rotated_copy(
        self,
        conv: onnx.NodeProto,
        prelu: onnx.NodeProto | None,
        order: np.ndarray,
        name: str,
        nodes: list[onnx.NodeProto],
    ) -> str:
        """Append to ``nodes`` a copy of ``conv`` (and ``prelu``) whose output
        channels come in ``order``; returns the copy's output."""
        inputs = [conv.input[0], self.constant_input(self.weights(conv)[order], f"{name}_w")]
        bias = self.constant(conv.input[2]) if len(conv.input) > 2 else None
        if bias is not None:
            inputs.append(self.constant_input(bias[order], f"{name}_b"))
        made = name if prelu is None else f"{name}_conv"
        nodes.append(self.node("Conv", inputs, made, **self.attributes(conv)))
        if prelu is not None:
            slope = self.constant(prelu.input[1])
            assert slope is not None
            slope_name = self.constant_input(slope.reshape(-1)[order].reshape(slope.shape), f"{name}_slope")
            nodes.append(self.node("PRelu", [made, slope_name], name))
        return name

    def replace_nodes(self, nodes: list[onnx.NodeProto]) -> None:
        """The graph's nodes become ``nodes``; initializers no node uses go."""
        used = {name for node in nodes for name in node.input} | {i.name for i in self.graph.input}
        kept = [init for init in self.graph.initializer if init.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(kept)
        del self.graph.node[:]
        self.graph.node.extend(nodes)


def prelu_as_convolutions(model: onnx.ModelProto) -> int:
    """Rewrite ``model`` in place: every PReLU over a 4-d tensor whose slope is
    a constant per channel, shape (C, 1, 1) or (1, C, 1, 1), becomes
    ``y + Conv_{1 - s}(Relu(Conv_{-1}(y)))`` with depthwise 1 x 1 convolutions.
    Returns how many were rewritten (other PReLUs are left as they are)."""
    editor = _GraphEditor(model)
    ranks = _ranks(model)
    nodes: list[onnx.NodeProto] = []
    rewritten = 0
    for node in model.graph.node:
        slope = editor.constant(node.input[1]) if node.op_type == "PRelu" and len(node.input) == 2 else None
        channels = _channel_slopes(slope) if slope is not None else None
        if channels is None or ranks.get(node.input[0]) != 4:
            nodes.append(node)
            continue
        y, out = node.input[0], node.output[0]
        count = channels.size
        negate = editor.constant_input(np.full((count, 1, 1, 1), -1.0), f"{out}/prelu_negate")
        keep = editor.constant_input((1.0 - channels).reshape(count, 1, 1, 1), f"{out}/prelu_keep")
        negated, negative_part, scaled = f"{out}/prelu_neg", f"{out}/prelu_relu", f"{out}/prelu_scaled"
        depthwise = {"group": count, "kernel_shape": [1, 1]}
        nodes += [
            editor.node("Conv", [y, negate], negated, **depthwise),
            editor.node("Relu", [negated], negative_part),
            editor.node("Conv", [negative_part, keep], scaled, **depthwise),
            editor.node("Add", [y, scaled], out),
        ]
        rewritten += 1
    if rewritten:
        editor.replace_nodes(nodes)
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
