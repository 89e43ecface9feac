"""What a model family's adapter answers, so pruning stages never hard-code module names.

Structure is described by counts and kept indices:
- `Dims`: the sizes pruning acts on (layers, heads per layer, head dim, FFN units per layer, hidden size).
- `Keep`: which heads / FFN units / hidden dims survive; a layer with no head (or no FFN unit) loses that
  whole sublayer and the residual passes through.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dims:
    num_layers: int
    num_heads: tuple[int, ...]  # per layer
    head_dim: int
    ffn: tuple[int, ...]  # FFN units per layer
    hidden: int

    def prunable_params(self) -> int:
        """Attention and FFN weight values (biases, norms and embeddings excluded, as in CoFi)."""
        return sum(4 * self.hidden * h * self.head_dim + 2 * self.hidden * f for h, f in zip(self.num_heads, self.ffn))


@dataclass(frozen=True)
class Keep:
    heads: tuple[tuple[int, ...], ...]  # kept head indices per layer; () removes the attention sublayer
    ffn: tuple[tuple[int, ...], ...]  # kept FFN unit indices per layer; () removes the FFN sublayer
    hidden: tuple[int, ...] | None  # kept hidden dims; None keeps all

    def dims(self, head_dim: int, hidden_total: int) -> Dims:
        return Dims(len(self.heads), tuple(len(h) for h in self.heads), head_dim, tuple(len(f) for f in self.ffn),
                    hidden_total if self.hidden is None else len(self.hidden))

    def structure(self, total: Dims) -> dict:
        """The tfc.json record (changes.pruning): enough to rebuild every shape, and what the report charts."""
        return {
            "hidden_size": total.hidden if self.hidden is None else len(self.hidden),
            "hidden_size_total": total.hidden,
            "head_dim": total.head_dim,
            "layers": [{"heads": len(h), "heads_total": ht, "ffn": len(f), "ffn_total": ft}
                       for h, f, ht, ft in zip(self.heads, self.ffn, total.num_heads, total.ffn)],
        }

    @classmethod
    def first_n(cls, structure: dict) -> "Keep":
        """Shapes only (the first n of each): enough to rebuild modules that saved weights then fill."""
        layers = structure["layers"]
        hidden = structure["hidden_size"]
        return cls(tuple(tuple(range(layer["heads"])) for layer in layers),
                   tuple(tuple(range(layer["ffn"])) for layer in layers),
                   None if hidden == structure["hidden_size_total"] else tuple(range(hidden)))


@dataclass
class Gates:
    """Gate values for one forward pass; None means that granularity is not gated (all ones).

    Shapes: mha (L,), heads (L, H), ffn_layer (L,), ffn (L, F), hidden (D,). A zero removes the unit.
    """
    mha: "object" = None
    heads: "object" = None
    ffn_layer: "object" = None
    ffn: "object" = None
    hidden: "object" = None


class GateSlot:
    """Holds the gates the gated modules read; the training loop sets new ones every step."""

    def __init__(self, gates: Gates | None = None):
        self.gates = gates or Gates()
