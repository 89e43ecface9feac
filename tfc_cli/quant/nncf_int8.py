"""Static INT8 for OpenVINO: NNCF's post-training quantization of the exported ONNX graph.

Why NNCF for this backend, measured on MiniLM-L6 fine-tuned on rotten-tomatoes (docs/BENCHMARKS.md, "Peers on the
encoder"): tfc's graph quantized so ran on OpenVINO 2.26x faster than fp32 on ONNX Runtime, 0.08 pt from fp32 on
test, where onnxruntime.quantization's static INT8 lost 1.33 pt even after SmoothQuant chosen on validation. NNCF's
transformer preset smooths activation outliers into the weights (its SmoothQuant), quantizes the inputs of every
MatMul (the attention's own too), the Linear weights per channel and the embeddings, keeps LayerNorm, Softmax and
the residual Adds in float, and corrects the biases the rounding shifted (fast bias correction).

The result is a QDQ ONNX graph (QuantizeLinear/DequantizeLinear around the quantized ops): it stays model.onnx in
the output folder, OpenVINO compiles the QDQ pairs into int8 kernels, and ONNX Runtime runs it too (accurately, but
slower than its own static INT8 graph: its kernels do not fuse NNCF's pattern).
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

from ..quiet import library_noise_silenced


def missing() -> str | None:
    """What must be installed for this backend, or None."""
    absent = [name for name in ("nncf", "openvino") if importlib.util.find_spec(name) is None]
    return f"{' and '.join(absent)} not installed (pip install 'tfc[openvino]')" if absent else None


def version() -> str:
    import nncf

    return nncf.__version__


def nncf_quantize(fp32: bytes, batches: list[dict[str, np.ndarray]], exclude: list[str] = ()) -> bytes:
    """The static INT8 QDQ graph of `fp32`, its activation ranges from every batch of `batches`; the nodes named in
    `exclude` stay float (NNCF's ignored scope)."""
    # NNCF sends usage telemetry through openvino-telemetry unless NNCF_CI is set (nncf/telemetry/wrapper.py, read at
    # import): tfc runs offline and sends nothing.
    os.environ.setdefault("NNCF_CI", "1")
    import nncf
    import onnx

    with library_noise_silenced():
        quantized = nncf.quantize(onnx.load_from_string(fp32), nncf.Dataset(batches), subset_size=len(batches),
                                  model_type=nncf.ModelType.TRANSFORMER,
                                  ignored_scope=nncf.IgnoredScope(names=list(exclude)) if exclude else None)
    return quantized.SerializeToString()


class NncfInt8:
    """One float graph, quantized by NNCF on demand with some nodes left in float: the accuracy guard's quantizer
    for OpenVINO (quant/accuracy_guard.py), as OnnxInt8 is for onnxruntime.

    NNCF has its own guard (quantize_with_accuracy_control), which reverts nodes of the quantized graph. On its ONNX
    backend (NNCF 3.4), reverting the classifier's Gemm of a tiny BERT raised the accuracy drop from 1.4 to 12 pt,
    where leaving a node in float should lower it; here every try is quantized afresh with the nodes left out (NNCF's
    ignored scope), so nothing computed for the quantized node stays behind."""

    def __init__(self, fp32: bytes, batches: list[dict[str, np.ndarray]]):
        self.graph, self.batches = fp32, batches
        self._full: bytes | None = None

    def quantize(self, exclude: list[str] = ()) -> bytes:
        if exclude:
            return nncf_quantize(self.graph, self.batches, exclude)
        if self._full is None:
            self._full = nncf_quantize(self.graph, self.batches)
        return self._full

    def candidates(self) -> dict[str, str]:
        """The nodes NNCF quantizes -> a readable label (the torch module it came from)."""
        import onnx

        from .onnx_int8 import module_of_node

        modules, kinds = module_of_node(self.graph), {n.name: n.op_type for n in onnx.load_from_string(self.graph).graph.node}
        return {name: f"{modules[name]} ({kinds[name]} {name})" if name in modules else f"{kinds[name]} {name}"
                for name in quantized_nodes(self.quantize())}


def quantized_nodes(graph: bytes) -> list[str]:
    """Nodes of a QDQ graph with an input from a DequantizeLinear: those that run in int8."""
    import onnx

    nodes = onnx.load_from_string(graph).graph.node
    dequantized = {out for n in nodes if n.op_type == "DequantizeLinear" for out in n.output}
    return [n.name for n in nodes if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
            and any(i in dequantized for i in n.input)]
