"""Hard-concrete L0 gates (Louizos et al., 2018) at CoFi's five granularities, and the expected model size.

A gate's log-alpha is learned; in training each step samples a stretched, clamped concrete variable, so a gate
is exactly 0 or 1 with non-zero probability. `expected_counts` is differentiable, which lets the Lagrangian
term pull the expected sparsity or latency (budget.py) to the target. At the end `deterministic` turns each group of gates into fixed values, zeroing as
many units as the gates expect to be zero (CoFi's rule).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..arch import Dims, Gates

BETA, LIMIT_L, LIMIT_R, EPS = 2 / 3, -0.1, 1.1, 1e-6
SOFT_MASK_SHARPNESS = 0.8  # CoFi's scaling of log-alpha for the kept gates' final values
GRANULARITIES = ("mha", "heads", "ffn_layer", "ffn", "hidden")


class HardConcrete(nn.Module):
    def __init__(self, shape: tuple[int, ...], droprate_init: float):
        super().__init__()
        mean = math.log(1 - droprate_init) - math.log(droprate_init)
        self.log_alpha = nn.Parameter(torch.empty(shape).normal_(mean, 1e-2))

    def sample(self) -> torch.Tensor:
        u = torch.rand_like(self.log_alpha).clamp(EPS, 1 - EPS)
        s = torch.sigmoid((u.log() - (1 - u).log() + self.log_alpha) / BETA)
        return (s * (LIMIT_R - LIMIT_L) + LIMIT_L).clamp(0, 1)

    def prob_nonzero(self) -> torch.Tensor:
        """P(gate != 0) = 1 - CDF(0) of the stretched concrete distribution."""
        return torch.sigmoid(self.log_alpha - BETA * math.log(-LIMIT_L / LIMIT_R)).clamp(EPS, 1 - EPS)

    @torch.no_grad()
    def deterministic(self, exists: torch.Tensor) -> torch.Tensor:
        """Per row (last dim): zero the round(expected zeros) weakest existing gates; the rest get sigmoid(log-alpha)
        values. Gates of units the model no longer has (`exists` false) are 0."""
        rows = self.log_alpha.reshape(-1, self.log_alpha.shape[-1])
        mask = exists.reshape(rows.shape).to(rows.device)
        probs = (self.prob_nonzero().reshape(rows.shape) * mask)
        out = torch.sigmoid(rows / BETA * SOFT_MASK_SHARPNESS) * mask
        for r in range(rows.shape[0]):
            zeros = round(float(mask[r].sum()) - float(probs[r].sum()))
            if zeros > 0:
                ranked = out[r].masked_fill(~mask[r], float("inf"))
                out[r, torch.topk(ranked, k=zeros, largest=False).indices] = 0.0
        return out.reshape(self.log_alpha.shape)


class CofiGates(nn.Module):
    """The learned gates of one model; granularities switched off are absent (treated as all ones)."""

    def __init__(self, dims: Dims, enabled: dict[str, bool], droprate_init: float):
        super().__init__()
        self.dims = dims
        L = dims.num_layers
        shapes = {"mha": (L,), "heads": (L, dims.max_groups), "ffn_layer": (L,), "ffn": (L, dims.max_ffn),
                  "hidden": (dims.hidden,)}
        # which gates stand for a unit the model has: a model pruned before has ragged layers, maybe empty ones
        groups, ffn = torch.tensor(dims.groups), torch.tensor(dims.ffn)
        exists = {"mha": groups > 0, "heads": torch.arange(dims.max_groups)[None, :] < groups[:, None],
                  "ffn_layer": ffn > 0, "ffn": torch.arange(dims.max_ffn)[None, :] < ffn[:, None],
                  "hidden": torch.ones(dims.hidden, dtype=torch.bool)}
        for name, mask in exists.items():
            self.register_buffer(f"exists_{name}", mask, persistent=False)
        # 1-d gates (mha, ffn_layer, hidden) form one group for `deterministic`; heads and units one per layer
        self.gates = nn.ModuleDict({k: HardConcrete(shapes[k], droprate_init) for k in GRANULARITIES if enabled.get(k)})

    def exists(self, name: str) -> torch.Tensor:
        return getattr(self, f"exists_{name}")

    def sample(self) -> Gates:
        return Gates(**{k: g.sample() * self.exists(k) for k, g in self.gates.items()})

    def deterministic(self) -> Gates:
        return Gates(**{k: g.deterministic(self.exists(k)) for k, g in self.gates.items()})

    def score(self, name: str) -> torch.Tensor:
        """P(gate != 0) per gate; 1 for a granularity that is not gated; 0 for a unit the model does not have."""
        mask = self.exists(name).float()
        return self.gates[name].prob_nonzero() * mask if name in self.gates else mask

    def expected_counts(self) -> tuple[torch.Tensor, ...]:
        """Per layer: expected attention groups kept, P(attention sublayer kept), expected FFN units kept,
        P(FFN sublayer kept); and the expected hidden dims kept. Unit counts are of the sublayer if it is kept."""
        return (self.score("heads").sum(1), self.score("mha"), self.score("ffn").sum(1), self.score("ffn_layer"),
                self.score("hidden").sum())

    def expected_params(self) -> torch.Tensor:
        """Expected remaining prunable weights: hidden x (group width x groups + FFN matrices x units)."""
        d = self.dims
        heads, mha, units, ffn_layer, hidden = self.expected_counts()
        return hidden * (d.group_width * (heads * mha).sum() + d.ffn_matrices * (units * ffn_layer).sum())

    def expected_sparsity(self) -> torch.Tensor:
        return 1 - self.expected_params() / self.dims.prunable_params()


class Lagrangian(nn.Module):
    """lambda1 (s - t) + lambda2 (s - t)^2, minimised by the model and maximised by the lambdas (CoFi eq. 6)."""

    def __init__(self):
        super().__init__()
        self.lambdas = nn.Parameter(torch.zeros(2))
        self.lambdas.register_hook(lambda grad: -grad)  # gradient ascent on the multipliers

    def forward(self, expected: torch.Tensor, target: float) -> torch.Tensor:
        gap = expected - target
        return self.lambdas[0] * gap + self.lambdas[1] * gap * gap
