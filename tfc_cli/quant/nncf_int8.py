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


def nncf_quantize(fp32: bytes, batches: list[dict[str, np.ndarray]]) -> bytes:
    """The static INT8 QDQ graph of `fp32`, its activation ranges from every batch of `batches`."""
    # NNCF sends usage telemetry through openvino-telemetry unless NNCF_CI is set (nncf/telemetry/wrapper.py, read at
    # import): tfc runs offline and sends nothing.
    os.environ.setdefault("NNCF_CI", "1")
    import nncf
    import onnx

    with library_noise_silenced():
        quantized = nncf.quantize(onnx.load_from_string(fp32), nncf.Dataset(batches), subset_size=len(batches),
                                  model_type=nncf.ModelType.TRANSFORMER)
    return quantized.SerializeToString()
