"""Which units a one-shot prune keeps, given their scores and a share of the prunable weights to remove.

Prunable weights are `hidden x sum over layers (groups x group width + FFN units x FFN matrices)` (`Dims`). With
hidden dims and units both pruned, each keeps the same share, sqrt(1 - removed), so neither takes all of it.

Loss-based scores (taylor, fisher) estimate the same quantity for every unit, the change of the task loss, so units
are ranked across layers by score per weight removed and the cheapest go first (Kwon et al. 2022 rank globally
too). Magnitude and activation scores are not comparable across layers (each layer's weights and activations have
their own scale), so those criteria remove the same share in every layer, the lowest-scored units of each.
"""
from __future__ import annotations

import math

import torch

from ..arch import Dims, Keep
from ..errors import TfcError
from .scores import Scores

UNIT_KINDS = ("heads", "ffn", "hidden")
GLOBAL_CRITERIA = ("taylor", "fisher")


def _top(scores: torch.Tensor, count: int) -> tuple[int, ...]:
    return tuple(sorted(scores.topk(count).indices.tolist())) if count > 0 else ()


def _unit_weights(dims: Dims, kinds: set[str]) -> float:
    """Prunable weights per hidden dim held by the unit kinds in `kinds`."""
    total = 0
    if "heads" in kinds:
        total += sum(g * dims.group_width for g in dims.groups)
    if "ffn" in kinds:
        total += sum(f * dims.ffn_matrices for f in dims.ffn)
    return total


def select_units(dims: Dims, scores: Scores, kinds: set[str], remove: float, criterion: str) -> Keep:
    """The Keep that removes about `remove` (a share of `dims`' prunable weights) from the unit kinds in `kinds`."""
    per_dim = sum(g * dims.group_width + f * dims.ffn_matrices for g, f in zip(dims.groups, dims.ffn))
    units = kinds - {"hidden"}
    hidden = dims.hidden
    if "hidden" in kinds:
        share = math.sqrt(1 - remove) if units else 1 - remove
        hidden = max(1, round(dims.hidden * share))
    budget = (1 - remove) * per_dim * dims.hidden / hidden  # unit weights per hidden dim that may remain
    excess = max(0.0, per_dim - budget)
    keep_groups = [tuple(range(g)) for g in dims.groups]
    keep_ffn = [tuple(range(f)) for f in dims.ffn]
    if units and excess > 0:
        available = _unit_weights(dims, units)
        if excess > available:
            raise TfcError(f"removing {remove:.0%} of the prunable weights needs more than all of "
                           f"{' and '.join(sorted(units))}, which hold {available / per_dim:.0%} of them; add a "
                           "granularity or lower the target")
        if criterion in GLOBAL_CRITERIA:
            keep_groups, keep_ffn = _global(dims, scores, units, excess)
        else:
            keep_groups, keep_ffn = _uniform(dims, scores, units, 1 - excess / available)
    keep_hidden = None if hidden == dims.hidden else _top(scores.hidden, hidden)
    return Keep(tuple(keep_groups), tuple(keep_ffn), keep_hidden)


def _uniform(dims: Dims, scores: Scores, units: set[str], share: float):
    groups = [_top(s, round(g * share)) if "heads" in units and s is not None else tuple(range(g))
              for s, g in zip(scores.groups, dims.groups)]
    ffn = [_top(s, round(f * share)) if "ffn" in units and s is not None else tuple(range(f))
           for s, f in zip(scores.ffn, dims.ffn)]
    return groups, ffn


def _global(dims: Dims, scores: Scores, units: set[str], excess: float):
    candidates = []  # (score per weight, weight, kind, layer, unit)
    for kind, per_layer, cost in (("heads", scores.groups, dims.group_width), ("ffn", scores.ffn, dims.ffn_matrices)):
        if kind not in units:
            continue
        for layer, s in enumerate(per_layer):
            for unit, value in enumerate(s.tolist() if s is not None else []):
                candidates.append((value / cost, cost, kind, layer, unit))
    candidates.sort()
    removed = {("heads", i): set() for i in range(dims.num_layers)} | {("ffn", i): set() for i in range(dims.num_layers)}
    taken = 0.0
    for _, cost, kind, layer, unit in candidates:
        if taken >= excess:
            break
        if taken + cost - excess > cost / 2:  # a head would overshoot by more than half of it: cheaper units fill in
            continue
        removed[(kind, layer)].add(unit)
        taken += cost
    groups = [tuple(u for u in range(g) if u not in removed[("heads", i)]) for i, g in enumerate(dims.groups)]
    ffn = [tuple(u for u in range(f) if u not in removed[("ffn", i)]) for i, f in enumerate(dims.ffn)]
    return groups, ffn


def select_layers(dims: Dims, scores: Scores, remove: float) -> list[int]:
    """The layers kept when the lowest-scored whole layers go until about `remove` of the prunable weights has."""
    if scores.layers is None:
        raise TfcError("this criterion cannot rank whole layers")
    per_layer = [dims.hidden * (g * dims.group_width + f * dims.ffn_matrices) for g, f in zip(dims.groups, dims.ffn)]
    target, taken, dropped = remove * sum(per_layer), 0, set()
    for layer in scores.layers.argsort().tolist():
        if taken >= target or len(dropped) == dims.num_layers - 1:
            break
        # stop short rather than overshoot by more than half a layer
        if taken + per_layer[layer] - target > per_layer[layer] / 2:
            break
        dropped.add(layer)
        taken += per_layer[layer]
    return [i for i in range(dims.num_layers) if i not in dropped]
