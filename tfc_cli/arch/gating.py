"""Gated forward passes for any family (CoFi, Xia et al. 2022), through hooks and norm wrappers.

- An attention group's gate scales its heads' context before o; an FFN unit's gate scales its activation
  before down. A sublayer gate and the hidden-dim gates scale what o and down write to the residual stream.
- The embeddings entering the stream are scaled by the hidden gates (and so is a tied LM head's input, because
  folding scales the shared table); norms on the stream normalise over the hidden dims still alive, so a pruned
  dim stays exactly zero.
- Post-norm: a sublayer whose gate (or all of whose units) is zero is skipped with its norm, residual passing,
  which is what removing it does. Pre-norm: it adds zero, which is what removing it does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import GateSlot
from .family import Family

_UNITS = {"mha": "heads", "ffn": "ffn"}
_LAYER = {"mha": "mha", "ffn": "ffn_layer"}


def norm_alive(norm: nn.Module, x: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
    """`norm` over the dims whose hidden gate is non-zero, as the same norm sliced to those dims computes it; the
    other dims keep their (zero) input."""
    if hidden is None:
        return norm(x)
    alive = hidden.nonzero().squeeze(-1)
    out = x.clone()
    if isinstance(norm, nn.LayerNorm):
        bias = None if norm.bias is None else norm.bias[alive]
        out[..., alive] = F.layer_norm(x[..., alive], (len(alive),), norm.weight[alive], bias, norm.eps)
    elif isinstance(norm, nn.RMSNorm):
        out[..., alive] = F.rms_norm(x[..., alive], (len(alive),), norm.weight[alive], norm.eps)
    else:  # the families' RMSNorm classes normalise over the last dim and scale by `weight`
        out[..., alive] = torch.func.functional_call(norm, {"weight": norm.weight[alive]}, (x[..., alive],))
    return out


def dead(gates, layer: int, kind: str) -> bool:
    layer_gates, unit_gates = getattr(gates, _LAYER[kind]), getattr(gates, _UNITS[kind])
    return ((layer_gates is not None and bool(layer_gates[layer] == 0))
            or (unit_gates is not None and not bool(unit_gates[layer].any())))


class GatedNorm(nn.Module):
    def __init__(self, inner: nn.Module, slot: GateSlot, skip: tuple[int, str] | None = None,
                 gate_input: bool = False, gate_output: bool = False):
        super().__init__()
        self.inner, self.slot, self.skip = inner, slot, skip
        self.gate_input, self.gate_output = gate_input, gate_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.slot.gates
        if self.skip is not None and dead(g, *self.skip):
            return x  # post-norm: the sublayer and its norm are gone; x is the residual
        if g.hidden is not None and self.gate_input:
            x = x * g.hidden
        out = norm_alive(self.inner, x, g.hidden)
        return out * g.hidden if g.hidden is not None and self.gate_output else out


class Gating:
    """Installs gates on a model described by `family`; `remove()` restores the plain modules."""

    def __init__(self, family: Family, slot: GateSlot):
        self.family, self.slot = family, slot
        self._handles, self._norms = [], []
        dims = family.dims()
        for i, layer in enumerate(family.layers()):
            attn, ffn = family.attention_linears(layer), family.ffn_linears(layer)
            norms = family.sublayer_norms(layer)
            if attn is not None:
                self._gate_writer(attn[3], i, "mha", dims.groups[i], dims.group_size * dims.head_dim)
            if ffn is not None:
                self._gate_writer(ffn[2], i, "ffn", dims.ffn[i], 1)
            for kind in ("mha", "ffn"):
                for parent, name in norms[kind]:
                    self._wrap(parent, name, skip=None if family.pre_norm else (i, kind))
        for parent, name in family.final_norms():
            self._wrap(parent, name)
        embedding_norm = family.embedding_norm()
        if embedding_norm is not None:
            self._wrap(*embedding_norm, gate_input=True, gate_output=True)
        else:
            for table in family.embedding_tables():
                self._handles.append(table.register_forward_hook(lambda _m, _i, out: self._scale_hidden(out)))
        if family.head_tied():
            for head in family.head_linears():
                self._handles.append(head.register_forward_pre_hook(lambda _m, args: (self._scale_hidden(args[0]),)))

    def _scale_hidden(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.slot.gates.hidden
        return x if hidden is None else x * hidden

    def _gate_writer(self, linear: nn.Linear, layer: int, kind: str, units: int, width: int) -> None:
        """Gates on a Linear that writes the residual stream (o, down): units on its input, sublayer and hidden
        gates on its output."""
        def before(_module, args):
            unit_gates = getattr(self.slot.gates, _UNITS[kind])
            if unit_gates is None:
                return None
            return (args[0] * unit_gates[layer][:units].repeat_interleave(width),)

        def after(_module, _args, out):
            g = self.slot.gates
            if dead(g, layer, kind):  # the bias too: a removed sublayer writes nothing
                return torch.zeros_like(out)
            layer_gates = getattr(g, _LAYER[kind])
            if layer_gates is not None:
                out = out * layer_gates[layer]
            return out if g.hidden is None else out * g.hidden

        self._handles += [linear.register_forward_pre_hook(before), linear.register_forward_hook(after)]

    def _wrap(self, parent: nn.Module, name: str, **kwargs) -> None:
        setattr(parent, name, GatedNorm(getattr(parent, name), self.slot, **kwargs))
        self._norms.append((parent, name))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for parent, name in self._norms:
            setattr(parent, name, getattr(parent, name).inner)
        self._handles, self._norms = [], []
