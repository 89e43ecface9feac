"""Which attention groups, FFN units and hidden dims matter most, by the magnitude of the weights they own, and the
`Keep` that takes the top ones uniformly in every layer (a narrower student initialised from its teacher)."""
from __future__ import annotations

import torch

from ..errors import TfcError
from .base import Keep
from .family import Family


def _top(scores: torch.Tensor, count: int) -> tuple[int, ...]:
    return tuple(sorted(scores.topk(count).indices.tolist()))


@torch.no_grad()
def magnitude_scores(family: Family) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None], torch.Tensor]:
    """Per layer the L2 norm of the weights each attention group and FFN unit owns (q/k/v rows and o columns; up,
    gate rows and down columns), None for a removed sublayer; and per hidden dim that of its embedding columns."""
    dims = family.dims()
    gs, hd = dims.group_size, dims.head_dim
    groups, units = [], []
    for i, layer in enumerate(family.layers()):
        attn, ffn = family.attention_linears(layer), family.ffn_linears(layer)
        if attn is None:
            groups.append(None)
        else:
            q, k, v, o = (m.weight.float() for m in attn)
            g = dims.groups[i]
            per_group = lambda w, rows: w.reshape(g, rows, -1).square().sum((1, 2))  # noqa: E731
            groups.append((per_group(q, gs * hd) + per_group(k, hd) + per_group(v, hd)
                           + per_group(o.T.contiguous(), gs * hd)).sqrt())
        if ffn is None:
            units.append(None)
        else:
            up, gate, down = ffn
            square = up.weight.float().square().sum(1) + down.weight.float().square().sum(0)
            if gate is not None:
                square = square + gate.weight.float().square().sum(1)
            units.append(square.sqrt())
    hidden = sum(t.weight.float().square().sum(0) for t in family.embedding_tables()).sqrt()
    return groups, units, hidden


def uniform_keep(family: Family, groups: int | None = None, ffn: int | None = None, hidden: int | None = None) -> Keep:
    """Keep the `groups` attention groups, `ffn` FFN units and `hidden` hidden dims of largest magnitude, the same
    counts in every layer (None keeps all). A layer with fewer than asked keeps what it has."""
    dims = family.dims()
    for name, count, most in (("attention groups", groups, dims.max_groups), ("FFN units", ffn, dims.max_ffn),
                              ("hidden dims", hidden, dims.hidden)):
        if count is not None and not 1 <= count <= most:
            raise TfcError(f"{count} {name} per layer: the model has {most}; keep 1 to {most}")
    group_scores, unit_scores, hidden_scores = magnitude_scores(family)
    pick = lambda scores, count: () if scores is None else (  # noqa: E731
        tuple(range(len(scores))) if count is None else _top(scores, min(count, len(scores))))
    keep_hidden = None if hidden is None or hidden == dims.hidden else _top(hidden_scores, hidden)
    return Keep(tuple(pick(s, groups) for s in group_scores), tuple(pick(s, ffn) for s in unit_scores), keep_hidden)
