"""BERT-family encoders (BERT, MiniLM, RoBERTa, XLM-R): post-LayerNorm layers with a pooler or dense head.

Gated forward (CoFi, Xia et al. 2022): head gates scale each head's context before the output projection; the
sublayer gate and the hidden-dim gates scale the projection's output; LayerNorm normalises over the hidden dims
still alive, so a pruned dim stays exactly zero in the residual stream. A sublayer whose gate (or all of whose
units) is zero is skipped, residual included, which is what removing it does to the pruned model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TfcError
from .base import Dims, GateSlot, Gates, Keep


def _norm_alive(x: torch.Tensor, norm: nn.LayerNorm, hidden: torch.Tensor | None) -> torch.Tensor:
    """LayerNorm over the dims whose hidden gate is non-zero; the others keep their (zero) input."""
    if hidden is None:
        return norm(x)
    alive = hidden.nonzero().squeeze(-1)
    out = x.clone()
    out[..., alive] = F.layer_norm(x[..., alive], (len(alive),), norm.weight[alive], norm.bias[alive], norm.eps)
    return out


class _GatedOutput(nn.Module):
    """BertSelfOutput / BertOutput (dense -> dropout -> LayerNorm(x + residual)) under gates."""

    def __init__(self, inner: nn.Module, slot: GateSlot, layer: int, kind: str, unit_width: int):
        super().__init__()
        self.inner, self.slot, self.layer, self.kind, self.unit_width = inner, slot, layer, kind, unit_width

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        g = self.slot.gates
        layer_gates, unit_gates = (g.mha, g.heads) if self.kind == "mha" else (g.ffn_layer, g.ffn)
        layer_gate = None if layer_gates is None else layer_gates[self.layer]
        units = None if unit_gates is None else unit_gates[self.layer]
        if (layer_gate is not None and layer_gate == 0) or (units is not None and not bool(units.any())):
            return input_tensor  # the sublayer is gone: the residual passes
        if units is not None:  # (B, T, units * width) * (units * width,)
            hidden_states = hidden_states * units.repeat_interleave(self.unit_width)
        out = self.inner.dense(hidden_states)
        if layer_gate is not None:
            out = out * layer_gate
        if g.hidden is not None:
            out = out * g.hidden
        out = self.inner.dropout(out)
        return _norm_alive(out + input_tensor, self.inner.LayerNorm, g.hidden)


class _GatedEmbeddingNorm(nn.Module):
    """The embeddings' LayerNorm with hidden gates applied before and after it."""

    def __init__(self, inner: nn.LayerNorm, slot: GateSlot):
        super().__init__()
        self.inner, self.slot = inner, slot

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.slot.gates.hidden
        if hidden is None:
            return self.inner(x)
        return _norm_alive(x * hidden, self.inner, hidden) * hidden


class SkippedAttention(nn.Module):
    """A removed attention sublayer: the layer's input passes unchanged."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states, None


class SkippedOutput(nn.Module):
    """A removed FFN sublayer (with the intermediate replaced by Identity): the residual passes unchanged."""

    def forward(self, hidden_states, input_tensor):
        return input_tensor


def slice_linear(old: nn.Linear, rows=None, cols=None) -> nn.Linear:
    weight = old.weight if rows is None else old.weight[list(rows)]
    weight = weight if cols is None else weight[:, list(cols)]
    bias = None if old.bias is None else (old.bias if rows is None else old.bias[list(rows)])
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).to(old.weight.device)
    with torch.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _layer_norm(old: nn.LayerNorm, dims) -> nn.LayerNorm:
    new = nn.LayerNorm(len(dims), eps=old.eps).to(old.weight.device)
    with torch.no_grad():
        new.weight.copy_(old.weight[list(dims)])
        new.bias.copy_(old.bias[list(dims)])
    return new


def _embedding(old: nn.Embedding, dims) -> nn.Embedding:
    new = nn.Embedding(old.num_embeddings, len(dims), padding_idx=old.padding_idx).to(old.weight.device)
    with torch.no_grad():
        new.weight.copy_(old.weight[:, list(dims)])
    return new


class BertAdapter:
    model_types = ("bert", "roberta", "xlm-roberta")

    def __init__(self, model: nn.Module):
        self.model = model
        self.base = model.base_model
        if not hasattr(self.base, "encoder") or not hasattr(self.base, "embeddings"):
            raise TfcError(f"{type(model).__name__}: expected a BERT-style encoder (embeddings + encoder.layer)")

    # -- what the model looks like -------------------------------------------------------------------------
    def layers(self) -> list[nn.Module]:
        return list(self.base.encoder.layer)

    def head_dim(self) -> int:
        config = self.model.config
        return config.hidden_size // config.num_attention_heads

    def dims(self) -> Dims:
        heads, ffn = [], []
        for layer in self.layers():
            attn = layer.attention
            heads.append(0 if isinstance(attn, SkippedAttention) else attn.self.query.out_features // self.head_dim())
            ffn.append(0 if isinstance(layer.output, SkippedOutput) else layer.intermediate.dense.out_features)
        return Dims(len(heads), tuple(heads), self.head_dim(), tuple(ffn), self.base.embeddings.word_embeddings.embedding_dim)

    def _head_input(self) -> tuple[nn.Module, str]:
        """The head Linear that reads the encoder's hidden states (its in-features follow hidden pruning)."""
        if getattr(self.base, "pooler", None) is not None:
            return self.base.pooler, "dense"
        classifier = getattr(self.model, "classifier", None)
        if isinstance(getattr(classifier, "dense", None), nn.Linear):
            return classifier, "dense"
        raise TfcError(f"{type(self.model).__name__}: no pooler or classifier.dense reads the hidden states; "
                       "hidden-dim pruning does not know this head")

    # -- gated training ------------------------------------------------------------------------------------
    def install_gates(self, slot: GateSlot) -> None:
        width = self.head_dim()
        for i, layer in enumerate(self.layers()):
            layer.attention.output = _GatedOutput(layer.attention.output, slot, i, "mha", width)
            layer.output = _GatedOutput(layer.output, slot, i, "ffn", 1)
        emb = self.base.embeddings
        emb.LayerNorm = _GatedEmbeddingNorm(emb.LayerNorm, slot)

    def remove_gates(self) -> None:
        for layer in self.layers():
            layer.attention.output = layer.attention.output.inner
            layer.output = layer.output.inner
        emb = self.base.embeddings
        emb.LayerNorm = emb.LayerNorm.inner

    # -- physical pruning ----------------------------------------------------------------------------------
    @torch.no_grad()
    def fold(self, gates: Gates) -> Keep:
        """Multiply gate values into the weights (call with gates removed); returns what the non-zero gates keep.

        After folding, the model with 0/1 gates computes what the gated model computed with `gates`.
        """
        dims, width = self.dims(), self.head_dim()
        hidden = gates.hidden
        heads_keep, ffn_keep = [], []
        for i, layer in enumerate(self.layers()):
            for out, layer_gates, unit_gates, keep, n, w in (
                    (layer.attention.output, gates.mha, gates.heads, heads_keep, dims.num_heads[i], width),
                    (layer.output, gates.ffn_layer, gates.ffn, ffn_keep, dims.ffn[i], 1)):
                device = out.dense.weight.device
                units = (torch.ones(n) if unit_gates is None else unit_gates[i].float()).to(device)
                layer_gate = 1.0 if layer_gates is None else float(layer_gates[i])
                if layer_gate == 0 or not bool(units.any()):
                    keep.append(())
                    continue
                keep.append(tuple(units.nonzero().squeeze(-1).tolist()))
                row_scale = layer_gate * (torch.ones(dims.hidden) if hidden is None else hidden.float()).to(device)
                out.dense.weight.mul_(row_scale[:, None] * units.repeat_interleave(w)[None, :])
                out.dense.bias.mul_(row_scale)
        if hidden is not None:
            emb = self.base.embeddings
            scale = hidden.float().to(emb.LayerNorm.weight.device)
            for table in (emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings):
                table.weight.mul_(scale[None, :])
            emb.LayerNorm.weight.mul_(scale)
            emb.LayerNorm.bias.mul_(scale)
        alive = None if hidden is None else tuple(hidden.nonzero().squeeze(-1).tolist())
        if alive is not None and not alive:
            raise TfcError("every hidden dimension was pruned; lower target_sparsity or disable hidden pruning")
        if alive is not None and len(alive) == dims.hidden:
            alive = None
        return Keep(tuple(heads_keep), tuple(ffn_keep), alive)

    @torch.no_grad()
    def resize(self, keep: Keep) -> None:
        """Remove everything `keep` does not name: heads, FFN units, whole sublayers and hidden dims."""
        width, h = self.head_dim(), keep.hidden
        for layer, heads, units in zip(self.layers(), keep.heads, keep.ffn):
            if not heads:
                layer.attention = SkippedAttention()
            elif not isinstance(layer.attention, SkippedAttention):
                attn = layer.attention.self
                cols = [head * width + j for head in heads for j in range(width)]
                for name in ("query", "key", "value"):
                    setattr(attn, name, slice_linear(getattr(attn, name), rows=cols, cols=h))
                attn.num_attention_heads, attn.all_head_size = len(heads), len(cols)
                out = layer.attention.output
                out.dense = slice_linear(out.dense, rows=h, cols=cols)
                if h is not None:
                    out.LayerNorm = _layer_norm(out.LayerNorm, h)
            if not units:
                layer.intermediate, layer.output = nn.Identity(), SkippedOutput()
            elif not isinstance(layer.output, SkippedOutput):
                layer.intermediate.dense = slice_linear(layer.intermediate.dense, rows=units, cols=h)
                layer.output.dense = slice_linear(layer.output.dense, rows=h, cols=units)
                if h is not None:
                    layer.output.LayerNorm = _layer_norm(layer.output.LayerNorm, h)
        if h is not None:
            emb = self.base.embeddings
            for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
                setattr(emb, name, _embedding(getattr(emb, name), h))
            emb.LayerNorm = _layer_norm(emb.LayerNorm, h)
            parent, attr = self._head_input()
            setattr(parent, attr, slice_linear(getattr(parent, attr), cols=h))
