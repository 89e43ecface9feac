"""The sizes structured pruning acts on, which units survive it, and the gates that decide.

- `Dims`: per layer the attention groups (a key/value head with the query heads that read it; one query head
  under plain multi-head attention) and the FFN units, plus the hidden size. Parameter counts come from these
  and the family's matrix shapes, never from a formula written elsewhere.
- `Keep`: which groups / FFN units / hidden dims survive; a layer with no group (or no FFN unit) loses that
  whole sublayer and the residual passes through.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dims:
    num_layers: int
    groups: tuple[int, ...]  # attention groups per layer (= key/value heads)
    group_size: int  # query heads per group (1 without grouped-query attention)
    head_dim: int
    ffn: tuple[int, ...]  # FFN units per layer
    ffn_matrices: int  # matrices an FFN unit has a row or column in: 2 (up, down) or 3 (gate, up, down)
    hidden: int

    @property
    def group_width(self) -> int:
        """Weights per hidden dim that one attention group owns: its q and o columns, its k and v rows."""
        return self.head_dim * (2 * self.group_size + 2)

    @property
    def max_groups(self) -> int:
        return max(self.groups, default=0)

    @property
    def max_ffn(self) -> int:
        return max(self.ffn, default=0)

    def heads(self, layer: int) -> int:
        return self.groups[layer] * self.group_size

    def prunable_params(self) -> int:
        """Attention and FFN weight values (biases, norms and embeddings excluded, as in CoFi)."""
        return self.hidden * sum(g * self.group_width + f * self.ffn_matrices for g, f in zip(self.groups, self.ffn))


@dataclass(frozen=True)
class Keep:
    groups: tuple[tuple[int, ...], ...]  # kept attention groups per layer; () removes the attention sublayer
    ffn: tuple[tuple[int, ...], ...]  # kept FFN unit indices per layer; () removes the FFN sublayer
    hidden: tuple[int, ...] | None  # kept hidden dims; None keeps all

    def dims(self, before: Dims) -> Dims:
        return Dims(before.num_layers, tuple(len(g) for g in self.groups), before.group_size, before.head_dim,
                    tuple(len(f) for f in self.ffn), before.ffn_matrices,
                    before.hidden if self.hidden is None else len(self.hidden))

    def record(self, before: Dims) -> dict:
        """The shapes tfc.json records: counts (the first n of each are rebuilt, then the saved weights fill them)
        and the kept group indices, which some families need (e.g. MPNet's per-head position bias)."""
        after = self.dims(before)
        return {
            "hidden_size": after.hidden, "hidden_size_before": before.hidden, "head_dim": before.head_dim,
            "group_size": before.group_size,
            "layers": [{"heads": after.heads(i), "heads_before": before.heads(i), "kv_heads": len(g),
                        "kept_groups": list(g), "ffn": len(f), "ffn_before": before.ffn[i]}
                       for i, (g, f) in enumerate(zip(self.groups, self.ffn))],
        }

    @classmethod
    def from_record(cls, record: dict) -> "Keep":
        layers = record["layers"]
        hidden = record["hidden_size"]
        return cls(tuple(tuple(layer["kept_groups"]) for layer in layers),
                   tuple(tuple(range(layer["ffn"])) for layer in layers),
                   None if hidden == record["hidden_size_before"] else tuple(range(hidden)))


@dataclass
class Gates:
    """Gate values for one forward pass; None means that granularity is not gated (all ones).

    Shapes: mha (L,), heads (L, G) over attention groups, ffn_layer (L,), ffn (L, F), hidden (D,). A zero
    removes the unit. In a model that is already pruned, G and F are the largest layer's; absent units are 0.
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
