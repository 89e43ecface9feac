"""The budget the final gates really give, and a last correction so it lands on the target.

CoFi's deterministic rule keeps as many units as the gates expect, which lands near the target when training
has converged, but short schedules leave a gap. `project` closes it in passes: first whole attention / FFN
sublayers, then heads and FFN units. Each pass removes the weakest (lowest log-alpha) survivors, or restores the
strongest removed ones, keeping each flip that brings the budget (budget.py: prunable weights or predicted latency
removed) closer to the target; a flip that overshoots but lands closer is corrected by the unit passes after it
where units can (a latency table that prices heads flat cannot: there, the sublayer that lands closest wins). The
report records how many gates moved.
"""
from __future__ import annotations

import dataclasses

import torch

from ..arch import Gates
from .budget import kept_counts
from .gates import BETA, SOFT_MASK_SHARPNESS, CofiGates

_SUBLAYERS = (("mha", "heads"), ("ffn_layer", "ffn"))  # (sublayer gate, unit gates)


def _open_value(log_alpha: float) -> float:
    return float(torch.sigmoid(torch.tensor(log_alpha / BETA * SOFT_MASK_SHARPNESS)))


def _candidates(level: str, gates: Gates, learned: CofiGates, removing: bool) -> list[tuple[float, str, tuple]]:
    """(log-alpha, gate name, index) for every gate that may flip and governs something still kept."""
    dims = learned.dims
    _, _, hidden = kept_counts(gates, dims)
    out = []
    for layer_kind, unit_kind in _SUBLAYERS:
        layer_gates, unit_gates = getattr(gates, layer_kind), getattr(gates, unit_kind)
        counts = dims.groups if unit_kind == "heads" else dims.ffn
        for layer in range(dims.num_layers):
            width = counts[layer]
            if width == 0 or hidden == 0:  # removed before this stage, or no hidden dim left: nothing to flip
                continue
            alive = layer_gates is None or bool(layer_gates[layer] != 0)
            units = torch.ones(width) if unit_gates is None else unit_gates[layer][:width]
            if level == "sublayers" and layer_kind in learned.gates and alive == removing and bool((units != 0).any()):
                out.append((float(learned.gates[layer_kind].log_alpha[layer]), layer_kind, (layer,)))
            elif level == "units" and unit_kind in learned.gates and alive:
                log_alpha = learned.gates[unit_kind].log_alpha[layer]
                out += [(float(log_alpha[u]), unit_kind, (layer, u)) for u in range(width)
                        if bool(units[u] != 0) == removing]
    return out


@torch.no_grad()
def project(gates: Gates, learned: CofiGates, budget, tolerance: float) -> tuple[Gates, int]:
    """Gates whose achieved budget (of the model entering the stage) is as close to `budget.target` as the gated
    granularities allow."""
    values = {f.name: (None if getattr(gates, f.name) is None else getattr(gates, f.name).clone())
              for f in dataclasses.fields(Gates)}
    gap_of = lambda: budget.achieved(Gates(**values)) - budget.target  # noqa: E731
    moved = 0
    for level in ("sublayers", "units", "units", "units"):  # a unit pass that overshoots is corrected by the next
        gap = gap_of()
        if abs(gap) <= tolerance:
            break
        removing = gap < 0  # under the target: remove the weakest; over it: restore the strongest
        for log_alpha, kind, index in sorted(_candidates(level, Gates(**values), learned, removing),
                                             reverse=not removing):
            if abs(gap) <= tolerance / 2:
                break
            before = values[kind][index].clone()
            values[kind][index] = 0.0 if removing else _open_value(log_alpha)
            flipped = gap_of()
            change = abs(flipped - gap)
            if change > 0 and abs(flipped) <= abs(gap):
                gap, moved = flipped, moved + 1
            else:
                values[kind][index] = before
    return Gates(**values), moved
