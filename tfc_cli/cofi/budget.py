"""What CoFi's Lagrangian constrains: the fraction of the stage input's prunable weights removed (`target_sparsity`)
or of its latency removed (`target_speedup`), each both as an expectation over the gates (differentiable, for
training) and as what fixed gates give (for the final projection).

The latency budget prices every sublayer by a table measured on this machine (prune/costs.py): attention at each
count of groups kept, the FFN at each count of units, and 0 for a removed sublayer. The table's flat part is the
cost of a sublayer merely being there (kernel launches, softmax, LayerNorm, residual), which a weight count does
not see: under it a whole sublayer is worth more than the same weights spread over units, so removing whole
sublayers, and whole layers, is the optimiser's choice by their measured cost (ZipLM, Kurtic et al. 2023, prices
structures the same way). Hidden dims are priced at nothing: on MiniLM-L6 (torch, batch 1 x 64, 2 threads) cutting
them to 369 of 384 measured 1.01x [0.98-1.03] and to 320 1.10x, against 1.04x and 1.20x if cost scaled with them;
scaled that way, a 2.01x prediction came out 1.72x measured. The stage times the result and corrects a shortfall.
"""
from __future__ import annotations

import torch

from ..arch import Dims, Gates
from ..prune.costs import CostTable, uniform_layers


def _present(counts: tuple[int, ...], width: int) -> torch.Tensor:
    return (torch.arange(width)[None, :] < torch.tensor(counts)[:, None]).float()


def kept_counts(gates: Gates, dims: Dims) -> tuple[torch.Tensor, torch.Tensor, int]:
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
    heads, units, hidden = kept_counts(gates, dims)
    return int((hidden * (dims.group_width * heads + dims.ffn_matrices * units)).sum())


def achieved_sparsity(gates: Gates, dims: Dims) -> float:
    return 1 - kept_params(gates, dims) / dims.prunable_params()


class SparsityBudget:
    """Remove `target` of the stage input's attention+FFN weights."""
    name, noun = "sparsity", "sparsity"

    def __init__(self, dims: Dims, target: float):
        self.dims, self.target = dims, target

    def expected(self, gates) -> torch.Tensor:
        return gates.expected_sparsity()

    def achieved(self, gates: Gates) -> float:
        return achieved_sparsity(gates, self.dims)


class LatencyBudget:
    """Remove 1 - 1/`speedup` of the stage input's latency, as `table` predicts it."""
    name, noun = "latency_reduction", "latency reduction"

    def __init__(self, dims: Dims, table: CostTable, speedup: float):
        groups, units = uniform_layers(dims)
        layers = dims.num_layers
        self.dims, self.table, self.speedup, self.target = dims, table, speedup, 1 - 1 / speedup
        self.full_ms = table.total([groups] * layers, [units] * layers)
        self._heads = _curve(table.heads)
        self._ffn = _curve(table.ffn)

    def retargeted(self, speedup: float) -> "LatencyBudget":
        return LatencyBudget(self.dims, self.table, speedup)

    def _ms(self, heads, mha, units, ffn_layer) -> torch.Tensor:
        sublayers = (mha * _interpolate(heads, *self._heads)).sum() + (ffn_layer * _interpolate(units, *self._ffn)).sum()
        return self.table.base + sublayers

    def expected(self, gates) -> torch.Tensor:
        heads, mha, units, ffn_layer, _ = gates.expected_counts()
        return 1 - self._ms(heads, mha, units, ffn_layer) / self.full_ms

    def predicted_ms(self, gates: Gates) -> float:
        heads, units, _ = kept_counts(gates, self.dims)
        ones = torch.ones_like(heads)
        return float(self._ms(heads, ones, units, ones))

    def achieved(self, gates: Gates) -> float:
        return 1 - self.predicted_ms(gates) / self.full_ms


def _curve(costs: dict[int, float]) -> tuple[torch.Tensor, torch.Tensor]:
    counts = sorted(costs)
    return torch.tensor(counts, dtype=torch.float32), torch.tensor([costs[c] for c in counts], dtype=torch.float32)


def _interpolate(x: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear through (xs, ys), differentiable in x; the table's fit is linear between its counts, so this
    is exact at every count, measured or not."""
    xs, ys = xs.to(x.device), ys.to(x.device)
    right = torch.searchsorted(xs, x.detach().clamp(xs[0], xs[-1]), right=True).clamp(1, len(xs) - 1)
    x0, x1, y0, y1 = xs[right - 1], xs[right], ys[right - 1], ys[right]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
