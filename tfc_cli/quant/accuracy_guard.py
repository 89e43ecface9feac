"""Accuracy-aware INT8: leave the most harmful nodes in float until the accuracy drop is within bounds.

As in Intel Neural Compressor's accuracy-driven tuning: quantize everything; if validation accuracy drops by
more than `max_drop`, rank nodes by sensitivity (how much of the logit error on a probe batch goes away when
that node alone stays float), then keep the top 1, 2, 4, ... nodes in float until the drop is within bounds,
and finally search for the smallest such count between the last two tries.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .. import progress
from ..errors import TfcError


class Quantizer(Protocol):
    """A float graph quantized on demand with some nodes left in float (quant/onnx_int8.OnnxInt8 for onnxruntime,
    quant/nncf_int8.NncfInt8 for OpenVINO)."""
    graph: bytes

    def candidates(self) -> dict[str, str]: ...  # quantizable node name -> a readable label

    def quantize(self, exclude: list[str] = ()) -> bytes: ...


@dataclass
class GuardResult:
    onnx: bytes
    float_nodes: list[str] = field(default_factory=list)  # readable labels of the nodes left in float
    accuracy_float: float = 0.0
    accuracy_int8_all: float = 0.0  # everything quantized
    accuracy: float = 0.0  # what was kept
    tries: list[dict] = field(default_factory=list)


def guarded_quantize(quantizer: Quantizer, accuracy_of: Callable[[bytes], float], logits_of: Callable[[bytes], np.ndarray],
                     max_drop: float) -> GuardResult:
    """`accuracy_of(onnx)` -> validation accuracy; `logits_of(onnx)` -> logits on a small probe batch."""
    base = accuracy_of(quantizer.graph)
    full = quantizer.quantize()
    result = GuardResult(full, accuracy_float=base, accuracy_int8_all=accuracy_of(full))
    result.accuracy = result.accuracy_int8_all
    if base - result.accuracy <= max_drop:
        return result

    labels = quantizer.candidates()
    reference = logits_of(quantizer.graph)
    error = lambda onnx: float(np.mean((logits_of(onnx) - reference) ** 2))  # noqa: E731
    full_error = error(full)
    gains = {}
    with progress.bar("int8 sensitivity per node", len(labels)) as advance:
        for node in labels:
            gains[node] = full_error - error(quantizer.quantize(exclude=[node]))
            advance()
    order = sorted(labels, key=lambda n: -gains[n])

    def attempt(k: int) -> tuple[bytes, float]:
        onnx = quantizer.quantize(exclude=order[:k])
        acc = accuracy_of(onnx)
        result.tries.append({"float_nodes": k, "accuracy": acc})
        progress.info(f"  {k} node(s) in float: validation accuracy {acc:.4f} (float {base:.4f})")
        return onnx, acc

    low, k = 0, 1  # `low` float nodes are known not to be enough
    while True:
        onnx, acc = attempt(k)
        if base - acc <= max_drop:
            break
        if k == len(order):
            raise TfcError(f"quantize: validation accuracy {acc:.4f} stays more than max_accuracy_drop {max_drop} below "
                           f"the float model's {base:.4f} even with every node in float")
        low, k = k, min(2 * k, len(order))
    best = (k, onnx, acc)
    while best[0] - low > 1:  # the smallest count that still meets the bound
        mid = (low + best[0]) // 2
        onnx, acc = attempt(mid)
        if base - acc <= max_drop:
            best = (mid, onnx, acc)
        else:
            low = mid
    k, result.onnx, result.accuracy = best
    result.float_nodes = [labels[n] for n in order[:k]]
    return result
