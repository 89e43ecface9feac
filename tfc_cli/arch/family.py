"""What a model family looks like to structured pruning: where each layer keeps its attention (q, k, v, o), its
FFN (up, gate or none, down) and the norms on the residual stream, which embeddings write that stream and which
head Linears read it, and how a whole sublayer is removed. Gating (gating.py) and surgery (surgery.py) work from
this description only, so a new family is one subclass here (see docs/ARCHITECTURE.md).
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..errors import TfcError
from .base import Dims

Slot = tuple[nn.Module, str]  # (parent, attribute): where a module lives, so it can be replaced


class Family:
    name: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    pre_norm: ClassVar[bool]  # norm before each sublayer (Llama) or after the residual add (BERT)
    gated_ffn: ClassVar[bool] = False  # the FFN has a gate projection beside up (SwiGLU, GeGLU)
    classified_token: ClassVar[str] = "first"  # the token a sequence classifier's head reads: first or last real one
    # the sizes the HF config can state for every layer alike (ffn, heads, kv_heads, hidden -> config key): a pruned
    # model whose layers are uniform in these, and changed in nothing else, loads with the plain classes
    config_sizes: ClassVar[dict[str, str]] = {}

    def __init__(self, model: nn.Module):
        self.model = model
        self.base = model.base_model
        self.config = model.config

    # -- per layer ---------------------------------------------------------------------------------------------
    def layer_list(self) -> Slot:
        """Where the ModuleList of layers lives (whole layers are removed by replacing it)."""
        raise NotImplementedError

    def layers(self) -> list[nn.Module]:
        return list(getattr(*self.layer_list()))

    def attention_linears(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear] | None:
        """q, k, v, o; None once the sublayer was removed."""
        raise NotImplementedError

    def ffn_linears(self, layer: nn.Module) -> tuple[nn.Linear, nn.Linear | None, nn.Linear] | None:
        """up, gate (None without a gated FFN), down; None once the sublayer was removed."""
        raise NotImplementedError

    def sublayer_norms(self, layer: nn.Module) -> dict[str, list[Slot]]:
        """The norms on the hidden (residual) dims that belong to each sublayer: {"mha": [...], "ffn": [...]}.
        Post-norm: the norm after the residual add. Pre-norm: the norm before (and, in Gemma, after) it."""
        raise NotImplementedError

    def remove_attention(self, layer: nn.Module) -> None:
        raise NotImplementedError

    def remove_ffn(self, layer: nn.Module) -> None:
        raise NotImplementedError

    def set_heads(self, layer: nn.Module, kept_heads: list[int]) -> None:
        """Update what the attention module stores about its heads after q/k/v/o were sliced."""

    # -- the whole model ---------------------------------------------------------------------------------------
    def embedding_tables(self) -> list[nn.Embedding]:
        """Embeddings whose sum enters the residual stream."""
        raise NotImplementedError

    def embedding_norm(self) -> Slot | None:
        """Post-norm families normalise the embeddings' sum; pre-norm families do not."""
        return None

    def final_norms(self) -> list[Slot]:
        return []

    def head_linears(self) -> list[nn.Linear]:
        """Linears outside the layers that read the hidden states (pooler, classifier, LM head)."""
        raise NotImplementedError

    def head_tied(self) -> bool:
        """True when the LM head is the input embedding (its columns are then scaled with the embedding's)."""
        return False

    # -- sizes -------------------------------------------------------------------------------------------------
    def head_dim(self) -> int:
        c = self.config
        return getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads

    def group_size(self) -> int:
        c = self.config
        return c.num_attention_heads // (getattr(c, "num_key_value_heads", None) or c.num_attention_heads)

    def hidden(self) -> int:
        return self.embedding_tables()[0].embedding_dim

    def dims(self) -> Dims:
        groups, ffn = [], []
        for layer in self.layers():
            attn, mlp = self.attention_linears(layer), self.ffn_linears(layer)
            groups.append(0 if attn is None else attn[1].out_features // self.head_dim())
            ffn.append(0 if mlp is None else mlp[0].out_features)
        return Dims(len(groups), tuple(groups), self.group_size(), self.head_dim(), tuple(ffn),
                    3 if self.gated_ffn else 2, self.hidden())


class ZeroAttention(nn.Module):
    """A removed attention sublayer of a pre-norm decoder: adds nothing to the residual stream.

    It still appends one head of zeros per token to the KV cache, so the cache's length, which transformers reads
    from layer 0 to place new tokens, stays right when layer 0 has no attention. (A zero-head entry would do for
    torch, but torch.export cannot trace the decoder's cache through a zero-sized dimension.)"""

    def __init__(self, layer_idx: int, head_dim: int):
        super().__init__()
        self.layer_idx, self.head_dim = layer_idx, head_dim

    def forward(self, hidden_states, *args, past_key_values=None, **kwargs):
        if past_key_values is not None:
            b, t, _ = hidden_states.shape
            placeholder = hidden_states.new_zeros(b, 1, t, self.head_dim)
            past_key_values.update(placeholder, placeholder, self.layer_idx)
        return torch.zeros_like(hidden_states), None


class ZeroFfn(nn.Module):
    """A removed FFN sublayer under a pre-norm: adds nothing to the residual stream."""

    def forward(self, hidden_states, *args, **kwargs):
        return torch.zeros_like(hidden_states)


def family_error(model: nn.Module, what: str) -> TfcError:
    return TfcError(f"{type(model).__name__}: {what}")
