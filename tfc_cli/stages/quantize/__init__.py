"""`type: quantize`: post-training quantization, one class per `method:` (each with its own options).

- `dynamic-int8` (dynamic.py): int8 weights, activations quantized at run time; onnxruntime or torch.
- `static-int8` (static.py): activation scales calibrated beforehand, optionally after SmoothQuant; onnxruntime.
- `qat-int8` (qat.py): fake-quantized fine-tuning, then static-int8; onnxruntime.
- `weight-only` (weight_only.py): int4/int8 grouped weights of a causal LM with its KV cache; onnxruntime.
The three classifier methods share int8.py (export, ORT quantization, the accuracy guard).
"""
from __future__ import annotations

from ..base import Stage
from .dynamic import DynamicInt8
from .qat import QatInt8
from .static import StaticInt8
from .weight_only import WeightOnly


class Quantize(Stage):
    """The recipe's `type: quantize`: it only names the methods; `method:` picks the stage class that runs."""
    type = "quantize"
    help = ("Post-training quantization: INT8 (dynamic, static, QAT) of a classifier's Linear and embedding weights; "
            "weight-only int4/int8 for causal LMs.")
    variant_key = "method"
    variants = {cls.method: cls for cls in (DynamicInt8, StaticInt8, QatInt8, WeightOnly)}
    default_variant = DynamicInt8.method
