"""INT8 on ONNX Runtime: dynamic (weights int8, activations quantized per call) and static (activation scales
fixed from a calibration set, QDQ format) with onnxruntime.quantization.

Only MatMul and Gather (embeddings) are quantized: quantizing the Adds, LayerNorms and Softmax
of a transformer adds Quantize/Dequantize pairs that cost more than they save on CPU.
On CPUs without VNNI, u8s8 int8 products can saturate (vpmaddubsw adds pairs into int16), which is known to
collapse BERT accuracy; there the weights use a 7-bit reduced range.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ..bench import cpu_description
from ..quiet import library_noise_silenced

CALIBRATION_BATCH = 8


def has_vnni() -> bool:
    flags = cpu_description()["flags"]
    return flags["avx512_vnni"] or flags["avx_vnni"]


def quantize_dynamic_int8(fp32: bytes, per_channel: bool, reduce_range: bool) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="tfc-onnx-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        with library_noise_silenced():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                             reduce_range=reduce_range)
        return dst.read_bytes()


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over pre-tokenized numpy batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._it: Iterator = iter(batches)

    def get_next(self):
        return next(self._it, None)


def calibration_batches(tokenizer, texts: list[str], pairs: list[str] | None, max_length: int,
                        input_names: list[str]) -> list[dict[str, np.ndarray]]:
    batches = []
    for i in range(0, len(texts), CALIBRATION_BATCH):
        args = (texts[i:i + CALIBRATION_BATCH],) + ((pairs[i:i + CALIBRATION_BATCH],) if pairs else ())
        enc = tokenizer(*args, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        batches.append({k: enc[k].astype(np.int64) for k in input_names})
    return batches


def quantize_static_int8(fp32: bytes, batches: list[dict[str, np.ndarray]], per_channel: bool, reduce_range: bool,
                         calibration: str) -> bytes:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[calibration]
    with tempfile.TemporaryDirectory(prefix="tfc-onnx-") as tmp:
        src, prep, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "prep.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        with library_noise_silenced():
            quant_pre_process(str(src), str(prep), skip_symbolic_shape=True)  # shape inference + graph clean-up
            quantize_static(str(prep), str(dst), _Batches(batches), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=["MatMul", "Gather"], per_channel=per_channel, reduce_range=reduce_range,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        return dst.read_bytes()
