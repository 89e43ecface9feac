"""INT8 on ONNX Runtime: dynamic (weights int8, activations quantized per call) and static (activation scales
fixed from a calibration set, QDQ format) with onnxruntime.quantization.

Only MatMul and Gather (embeddings) are quantized: quantizing the Adds, LayerNorms and Softmax of a
transformer adds Quantize/Dequantize pairs that cost more than they save on CPU. In the static graph only their
inputs are rounded: onnxruntime's QDQ placement also rounds every MatMul output (the raw attention scores in steps
of 3.3 on MiniLM-L6) and feeds the rounded LayerNorm outputs to the residual Adds; without both, static INT8 of
MiniLM-L6 lost 0.08 pt instead of 0.86 and ran faster (docs/BENCHMARKS.md, "Static INT8: rounding only what the
int8 kernels read").
On CPUs without VNNI, u8s8 int8 products can saturate (vpmaddubsw adds pairs into int16), which is known to
collapse BERT accuracy; there the weights use a 7-bit reduced range.
"""
from __future__ import annotations

import ast
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..bench import cpu_description
from ..quiet import library_noise_silenced

CALIBRATION_BATCH = 8
QUANTIZED_OPS = ("MatMul", "Gather")


def has_vnni() -> bool:
    flags = cpu_description()["flags"]
    return flags["avx512_vnni"] or flags["avx_vnni"]


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over pre-tokenized numpy batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._it: Iterator = iter(batches)

    def get_next(self):
        return next(self._it, None)


def calibration_batches(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int,
                        input_names: list[str]) -> list[dict[str, np.ndarray]]:
    """Batches padded to `max_length`: the histogram calibrators (percentile, entropy) need one shape throughout."""
    batches = []
    for i in range(0, len(texts), CALIBRATION_BATCH):
        args = (texts[i:i + CALIBRATION_BATCH],) + ((pairs[i:i + CALIBRATION_BATCH],) if pairs else ())
        enc = tokenizer(*args, padding="max_length", truncation=True, max_length=max_length, return_tensors="np")
        batches.append({k: enc[k].astype(np.int64) for k in input_names})
    return batches


class OnnxInt8:
    """One float graph, quantized on demand with some nodes left in float (`exclude`)."""

    def __init__(self, fp32: bytes, method: str, per_channel: bool, reduce_range: bool,
                 calibration: str = "minmax", batches: list[dict[str, np.ndarray]] | None = None,
                 ort_default_qdq: bool = False):
        self.method, self.per_channel, self.reduce_range = method, per_channel, reduce_range
        self.ort_default_qdq = ort_default_qdq  # onnxruntime's QDQ placement as it comes (for comparisons)
        self.calibration, self.batches = calibration, batches
        self._modules = module_of_node(fp32)  # read before pre-processing, which drops the exporter's metadata
        self.graph = self._prepare(fp32) if method == "static-int8" else fp32

    @staticmethod
    def _prepare(fp32: bytes) -> bytes:
        """Shape inference and graph clean-up, as onnxruntime recommends before static quantization."""
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with tempfile.TemporaryDirectory(prefix="tfc-onnx-") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "prep.onnx"
            src.write_bytes(fp32)
            with library_noise_silenced():
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
            return dst.read_bytes()

    def candidates(self) -> dict[str, str]:
        """Quantizable node name -> a readable label (the torch module it came from)."""
        import onnx

        out = {}
        for node in onnx.load_from_string(self.graph).graph.node:
            if node.op_type in QUANTIZED_OPS:
                module = self._modules.get(node.name)
                out[node.name] = f"{module} ({node.op_type} {node.name})" if module else f"{node.op_type} {node.name}"
        return out

    def quantize(self, exclude: list[str] = ()) -> bytes:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

        with tempfile.TemporaryDirectory(prefix="tfc-onnx-") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(self.graph)
            with library_noise_silenced():
                if self.method == "static-int8":
                    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[self.calibration]
                    quantize_static(str(src), str(dst), _Batches(self.batches), quant_format=QuantFormat.QDQ,
                                    op_types_to_quantize=list(QUANTIZED_OPS), per_channel=self.per_channel,
                                    reduce_range=self.reduce_range, activation_type=QuantType.QUInt8,
                                    weight_type=QuantType.QInt8, calibrate_method=method,
                                    nodes_to_exclude=list(exclude),
                                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                                   "OpTypesToExcludeOutputQuantization":
                                                       [] if self.ort_default_qdq else list(QUANTIZED_OPS)})
                    if not self.ort_default_qdq:
                        dst.write_bytes(float_inputs_for_float_ops(dst.read_bytes(), exclude))
                else:
                    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=self.per_channel,
                                     reduce_range=self.reduce_range, op_types_to_quantize=list(QUANTIZED_OPS),
                                     nodes_to_exclude=list(exclude))
            return dst.read_bytes()


def float_inputs_for_float_ops(qdq: bytes, exclude=()) -> bytes:
    """onnxruntime's QDQ quantizer hands every consumer of a quantized activation its DequantizeLinear output, so
    the residual Adds read each LayerNorm output rounded to uint8 too (steps of 0.05-0.14 on MiniLM-L6), and so do
    the MatMuls left in float (`exclude`) beside quantized ones; no int8 kernel needs that. Here every node that is
    not quantized reads the float tensor again."""
    import onnx

    model = onnx.load_from_string(qdq)
    # A Gather's output keeps its table's scale (rounding it again changes nothing), and onnxruntime gathers int8
    # rows only while that pair stays: without it, it dequantized the whole word-embedding table on every call
    # (7.71 vs 5.39 ms for MiniLM-L6 at batch 1).
    gathered = {n.output[0] for n in model.graph.node if n.op_type == "Gather"}
    quantized_from = {n.output[0]: n.input[0] for n in model.graph.node
                      if n.op_type == "QuantizeLinear" and n.input[0] not in gathered}
    float_of = {n.output[0]: quantized_from[n.input[0]] for n in model.graph.node
                if n.op_type == "DequantizeLinear" and n.input[0] in quantized_from}
    for node in model.graph.node:
        quantized = node.op_type in QUANTIZED_OPS and node.name not in exclude
        if not quantized and node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            for i, name in enumerate(node.input):
                if name in float_of:
                    node.input[i] = float_of[name]
    return model.SerializeToString()


def module_of_node(onnx_bytes: bytes) -> dict[str, str]:
    """Node name -> the innermost torch module it was exported from (torch.export records its name scopes)."""
    import onnx

    out = {}
    for node in onnx.load_from_string(onnx_bytes).graph.node:
        props = {p.key: p.value for p in node.metadata_props}
        try:
            scopes = ast.literal_eval(props.get("pkg.torch.onnx.name_scopes", "[]"))
        except (ValueError, SyntaxError):
            continue
        if scopes:
            out[node.name] = max(scopes, key=len)
    return out
