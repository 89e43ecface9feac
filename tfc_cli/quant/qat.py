"""Quantization-aware training: fake-quantize what static INT8 on ONNX Runtime quantizes (quant/onnx_int8.py: every
MatMul and Gather) while fine-tuning, so training sees the rounding the deployed graph does:
- the encoder's Linear layers: weights int8 per output channel, symmetric (the converter's max-abs scales: levels
  -127..127, or -64..64 when the graph is for a CPU without VNNI, ORT's reduced range); inputs uint8 per tensor;
- both MatMuls of attention: query and key, then the softmax probabilities and value, uint8 per tensor each;
- the embedding tables (the Gathers): uint8 per tensor, asymmetric (0..255, or 0..127 in the reduced range).
Rounding passes gradients straight through (torch.fake_quantize_* ops).

The activation ranges either follow each training batch (a moving average of its min and max) or are fixed beforehand
to the min and max over the calibration examples (`calibrate_fake_quant`), the ranges static INT8's minmax calibration
will give the converted graph.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

EMA = 0.01  # weight of each new batch in the activation range
ATTENTION = "tfc_fake_quant"  # the attention implementation registered with transformers while training


def _fake_quant_uint8(x: torch.Tensor, lo: float, hi: float, top: int = 255) -> torch.Tensor:
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # the range must hold zero exactly
    scale = max((hi - lo) / top, 1e-8)
    return torch.fake_quantize_per_tensor_affine(x, scale, int(round(-lo / scale)), 0, top)


class ActivationFakeQuant(nn.Module):
    """An activation rounded to uint8 per tensor on its observed range."""

    def __init__(self):
        super().__init__()
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))
        self.calibrating = False  # float pass recording the min and max of every input
        self.frozen = False  # range fixed (by calibration), not moved by training batches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            with torch.no_grad():
                self.lo.copy_(torch.minimum(self.lo, x.min()))
                self.hi.copy_(torch.maximum(self.hi, x.max()))
            return x
        if self.training and not self.frozen:
            with torch.no_grad():
                lo, hi = x.min(), x.max()
                first = not torch.isfinite(self.lo)
                self.lo.copy_(lo if first else (1 - EMA) * self.lo + EMA * lo)
                self.hi.copy_(hi if first else (1 - EMA) * self.hi + EMA * hi)
        if not torch.isfinite(self.lo):
            return x
        return _fake_quant_uint8(x, float(self.lo), float(self.hi))


class FakeQuantLinear(nn.Module):
    def __init__(self, linear: nn.Linear, weight_bound: int = 127):
        """weight_bound: the weights' symmetric int8 levels are -weight_bound..weight_bound."""
        super().__init__()
        self.linear, self.weight_bound = linear, weight_bound
        self.input_quant = ActivationFakeQuant()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x)
        w, b = self.linear.weight, self.weight_bound
        w_scale = (w.detach().abs().amax(dim=1) / b).clamp(min=1e-8)
        w = torch.fake_quantize_per_channel_affine(w, w_scale, torch.zeros_like(w_scale, dtype=torch.int32), 0, -b, b)
        return F.linear(x, w, self.linear.bias)


class TableFakeQuant(nn.Module):
    """An embedding table rounded to uint8 per tensor on its own min and max (a parametrization of its weight), on
    0..`top`."""

    def __init__(self, top: int = 255):
        super().__init__()
        self.top = top

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return _fake_quant_uint8(weight, float(weight.detach().min()), float(weight.detach().max()), self.top)


def fake_quant_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                         **kwargs):
    """Eager attention, the graph the ONNX export writes (onnx_export.eager_attention), with the inputs of both
    MatMuls fake-quantized by the module's `matmul_input_quant` (query, key, probabilities, value)."""
    quant = getattr(module, "matmul_input_quant", None) or [nn.Identity()] * 4
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(quant[0](query), quant[1](key).transpose(2, 3)) * (scaling or query.size(-1) ** -0.5)
    if attention_mask is not None:
        scores = scores + attention_mask[..., :key.shape[-2]]
    probs = quant[2](F.softmax(scores, dim=-1))  # before dropout, whose 1/(1-p) would leave the calibrated range
    probs = F.dropout(probs, p=dropout, training=module.training)
    return torch.matmul(probs, quant[3](value)).transpose(1, 2).contiguous(), probs


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION, fake_quant_attention)
    AttentionMaskInterface.register(ATTENTION, eager_mask)  # the additive float mask eager attention takes


def insert_fake_quant(layers: list[nn.Module], weight_bound: int = 127) -> int:
    """Wrap every nn.Linear inside `layers`; returns how many."""
    count = 0
    for layer in layers:
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, FakeQuantLinear(child, weight_bound))
                    count += 1
    return count


def remove_fake_quant(layers: list[nn.Module]) -> None:
    for layer in layers:
        for parent in list(layer.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, FakeQuantLinear):
                    setattr(parent, name, child.linear)


def _attention_modules(family) -> list[nn.Module]:
    """Each layer's module holding the query projection: the one transformers passes to the attention function."""
    found = []
    for layer in family.layers():
        linears = family.attention_linears(layer)
        if linears is not None:
            found += [m for m in layer.modules() if any(c is linears[0] for c in m.children())][:1]
    return found


def _converter_levels(reduce_range: bool) -> tuple[int, int]:
    """The levels ORT's static converter rounds to: the int8 weights' symmetric bound and the uint8 tables' top."""
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    _, weight_bound = get_qmin_qmax_for_qType(TensorProto.INT8, reduce_range=reduce_range, symmetric=True)
    _, table_top = get_qmin_qmax_for_qType(TensorProto.UINT8, reduce_range=reduce_range)
    return int(weight_bound), int(table_top)


@contextlib.contextmanager
def fake_quantized(model: nn.Module, family, linear_only: bool = False, reduce_range: bool = False) -> Iterator[dict]:
    """`model` with everything static INT8 quantizes fake-quantized (or its encoder's Linear layers only; weights
    and tables in ORT's reduced range with `reduce_range`), and exactly as before on leaving, also on error. Yields how
    many of each were wrapped; attention MatMuls stay float in models whose attention transformers does not
    dispatch (their count is 0)."""
    weight_bound, table_top = _converter_levels(reduce_range)
    linears = insert_fake_quant(family.layers(), weight_bound)
    tables = [] if linear_only else family.embedding_tables()
    for table in tables:
        parametrize.register_parametrization(table, "weight", TableFakeQuant(table_top))
    attention = [] if linear_only else _attention_modules(family)
    before = model.config._attn_implementation
    try:
        if attention:
            _register_attention()
            model.set_attn_implementation(ATTENTION)
    except (AttributeError, ValueError, ImportError):
        attention = []
    for module in attention:
        module.matmul_input_quant = nn.ModuleList(ActivationFakeQuant() for _ in range(4))
    try:
        yield {"fake_quantized_linear": linears, "fake_quantized_weight_levels":
               f"-{weight_bound}..{weight_bound}",
               "fake_quantized_attention_matmuls": 2 * len(attention),
               "fake_quantized_embeddings": len(tables)}
    finally:
        if attention:
            model.set_attn_implementation(before)
        for module in attention:
            del module.matmul_input_quant
        for table in tables:
            parametrize.remove_parametrizations(table, "weight", leave_parametrized=False)
        remove_fake_quant(family.layers())


@torch.no_grad()
def calibrate_fake_quant(model: nn.Module, batches: list[dict]) -> int:
    """Fix every activation's fake-quant range to the min and max over `batches` (the float model's activations, as
    onnxruntime's minmax calibration sees them); returns how many were fixed."""
    quantizers = [m for m in model.modules() if isinstance(m, ActivationFakeQuant)]
    for m in quantizers:
        m.lo.fill_(float("inf"))
        m.hi.fill_(float("-inf"))
        m.calibrating = True
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for batch in batches:
            model(**{k: torch.as_tensor(v, device=device) for k, v in batch.items()})
    finally:
        for m in quantizers:
            m.calibrating = False
        model.train(was_training)
    for m in quantizers:
        m.frozen = True
    return len(quantizers)
