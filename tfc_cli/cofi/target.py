"""The sparsity the final gates really give, and a last correction so it lands on the target.

CoFi's deterministic rule keeps as many units as the gates expect, which lands near the target when training
has converged, but short schedules leave a gap. `project` closes it in two passes: first whole attention / FFN
sublayers (without overshooting), then heads and FFN units. Each pass removes the weakest (lowest log-alpha)
survivors, or restores the strongest removed ones, while that brings the prunable-weight count closer to the
target. The report records
how many gates moved.
"""
from __future__ import annotations

import dataclasses

import torch

from ..arch import Dims, Gates
from .gates import BETA, SOFT_MASK_SHARPNESS, CofiGates

_SUBLAYERS = (("mha", "heads"), ("ffn_layer", "ffn"))  # (sublayer gate, unit gates)


def _present(counts: tuple[int, ...], width: int) -> torch.Tensor:
    return (torch.arange(width)[None, :] < torch.tensor(counts)[:, None]).float()


def _kept(gates: Gates, dims: Dims) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(attention groups kept per layer, FFN units kept per layer, hidden dims kept), sublayer gates applied."""
    heads = _present(dims.groups, dims.max_groups)
    units = _present(dims.ffn, dims.max_ffn)
    if gates.heads is not None:
        heads = heads * (gates.heads.cpu() != 0).float()
    if gates.ffn is not None:
        units = units * (gates.ffn.cpu() != 0).float()
    if gates.mha is not None:
        heads = heads * (gates.mha.cpu() != 0).float()[:, None]
    if gates.ffn_layer is not None:
        units = units * (gates.ffn_layer.cpu() != 0).float()[:, None]
    hidden = dims.hidden if gates.hidden is None else int((gates.hidden != 0).sum())
    return heads.sum(1), units.sum(1), hidden


def kept_params(gates: Gates, dims: Dims) -> int:
    heads, units, hidden = _kept(gates, dims)
    return int((hidden * (dims.group_width * heads + dims.ffn_matrices * units)).sum())


def achieved_sparsity(gates: Gates, dims: Dims) -> float:
    return 1 - kept_params(gates, dims) / dims.prunable_params()


def _open_value(log_alpha: float) -> float:
    return float(torch.sigmoid(torch.tensor(log_alpha / BETA * SOFT_MASK_SHARPNESS)))


def _candidates(level: str, gates: Gates, learned: CofiGates, removing: bool) -> list[tuple[float, str, tuple, int]]:
    """(log-alpha, gate name, index, prunable weights it governs) for every gate that may flip."""
    dims = learned.dims
    _, _, hidden = _kept(gates, dims)
    unit_cost = {"heads": dims.group_width * hidden, "ffn": dims.ffn_matrices * hidden}
    out = []
    for layer_kind, unit_kind in _SUBLAYERS:
        layer_gates, unit_gates = getattr(gates, layer_kind), getattr(gates, unit_kind)
        counts = dims.groups if unit_kind == "heads" else dims.ffn
        for layer in range(dims.num_layers):
            width = counts[layer]
            if width == 0:  # removed before this stage: nothing to flip
                continue
            alive = layer_gates is None or bool(layer_gates[layer] != 0)
            units = torch.ones(width) if unit_gates is None else unit_gates[layer][:width]
            if level == "sublayers" and layer_kind in learned.gates and alive == removing:
                cost = int((units != 0).sum()) * unit_cost[unit_kind]
                out.append((float(learned.gates[layer_kind].log_alpha[layer]), layer_kind, (layer,), cost))
            elif level == "units" and unit_kind in learned.gates and alive:
                log_alpha = learned.gates[unit_kind].log_alpha[layer]
                out += [(float(log_alpha[u]), unit_kind, (layer, u), unit_cost[unit_kind])
                        for u in range(width) if bool(units[u] != 0) == removing]
    return out


@torch.no_grad()
def project(gates: Gates, learned: CofiGates, target: float, tolerance: float) -> tuple[Gates, int]:
    """Gates whose achieved sparsity (of the model entering the stage) is as close to `target` as the gated
    granularities allow."""
    dims, total = learned.dims, learned.dims.prunable_params()
    values = {f.name: (None if getattr(gates, f.name) is None else getattr(gates, f.name).clone())
              for f in dataclasses.fields(Gates)}
    moved = 0
    for level in ("sublayers", "units", "units", "units"):  # a unit pass that overshoots is corrected by the next
        gap = achieved_sparsity(Gates(**values), dims) - target
        if abs(gap) <= tolerance:
            break
        removing = gap < 0  # under-pruned: remove the weakest; over-pruned: restore the strongest
        budget = abs(gap) * total
        for log_alpha, kind, index, cost in sorted(_candidates(level, Gates(**values), learned, removing),
                                                   reverse=not removing):
            if budget <= tolerance * total / 2:
                break
            # whole sublayers never overshoot (the unit pass could not come back); a unit may, if it lands closer
            if cost == 0 or cost > budget * (1 if level == "sublayers" else 2):
                continue
            values[kind][index] = 0.0 if removing else _open_value(log_alpha)
            budget -= cost
            moved += 1
    return Gates(**values), moved
