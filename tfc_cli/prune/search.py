"""Kwon et al. 2022's mask search and rearrangement, from Fisher information of the head and FFN-unit masks.

- Search: choose how many attention groups and FFN units each layer keeps so that the estimated loss increase is
  least while the cost (CostTable: measured latency or weights) stays within a budget. Within a sublayer the
  units with the most Fisher information are kept, so each sublayer's choice is a count, and choosing one count per
  sublayer under a summed budget is a multiple-choice knapsack, solved exactly (up to a 1/4000 cost resolution) by
  dynamic programming. A count of 0, where allowed, removes the sublayer and saves its fixed cost, which at batch 1
  is large; on MiniLM-L6 every search that did so lost 6-10 points, so by default each sublayer keeps some. The
  loss of a count is the block-diagonal Fisher estimate (removal_losses). (Kwon et al. rank units globally by
  their diagonal Fisher against a piecewise-linear latency fit and always keep some of every sublayer.)
- Rearrangement: the diagonal Fisher ignores that two units' gradients can cancel. With each calibration batch's
  gradient vector g_j, the loss increase of removing a set P is about sum over batches (sum_{j in P} g_j)^2; a
  greedy exchange per sublayer lowers it at the same count.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import TfcError
from .costs import CostTable

RESOLUTION = 4000  # cost bins of the budget


def removal_losses(gradients: torch.Tensor) -> np.ndarray:
    """Per count k of kept units (0..units), the estimated loss increase of keeping the k with the most Fisher
    information and removing the rest: the mean over calibration examples of (sum of the removed units' mask
    gradients)^2, the block-diagonal Fisher estimate within the sublayer. `gradients`: (examples, units).

    The diagonal estimate (the removed units' Fisher summed) ignores how their gradients add up. Searching by it on
    MiniLM-L6 at 1.5x removed two whole FFN sublayers and lost 6.4 points; the block estimate sees that a whole
    sublayer's gradients add up rather than cancel."""
    g = gradients.double()
    order = g.pow(2).mean(0).argsort(descending=True)
    removed_from = g[:, order].flip(1).cumsum(1).flip(1)  # [:, k]: the sum over the units ranked k and below
    return np.concatenate([removed_from.pow(2).mean(0).numpy(), [0.0]])


def search_counts(table: CostTable, losses: list[np.ndarray], budget: float, whole: bool = False) -> list[int]:
    """One count per sublayer (attention of layer 0, FFN of layer 0, attention of layer 1, ...; costs from
    table.heads and table.ffn in turn) that minimises the summed loss estimates (`losses[i][k]`: sublayer i keeping
    k units, removal_losses) within `budget` (total cost, base included). `whole`: a count may be 0."""
    room = budget - table.base
    least = sum(min(c for k, c in (table.heads if i % 2 == 0 else table.ffn).items() if k or whole)
                for i in range(len(losses)))
    if room < least:
        raise TfcError(f"a budget of {budget:.4g} {table.unit} cannot be met: the parts no head or FFN unit belongs to "
                       f"(embeddings, norms, head) cost {table.base:.4g}"
                       + ("" if whole else f", and the least every sublayer can keep {least:.4g} more (remove_sublayers "
                                           "allows removing whole ones)"))
    bin_size = max(room, 1e-12) / RESOLUTION
    best = np.zeros(RESOLUTION + 1)  # best[b]: least summed loss at a cost of at most b bins
    choices = []
    for i, loss in enumerate(losses):
        costs = table.heads if i % 2 == 0 else table.ffn
        options = [(count, loss[count], int(np.ceil(cost / bin_size - 1e-9))) for count, cost in costs.items()
                   if count or whole]
        new = np.full(RESOLUTION + 1, np.inf)
        pick = np.zeros(RESOLUTION + 1, dtype=np.int64)
        for count, value, bins in options:
            if bins > RESOLUTION:
                continue
            candidate = np.full(RESOLUTION + 1, np.inf)
            candidate[bins:] = best[: RESOLUTION + 1 - bins] + value
            better = candidate < new
            new[better], pick[better] = candidate[better], count
        best = new
        choices.append((pick, {count: bins for count, _, bins in options}))
    counts, b = [], RESOLUTION
    for pick, bins in reversed(choices):
        count = int(pick[b])
        counts.append(count)
        b -= bins[count]
    return counts[::-1]


def keep_from_counts(fisher: list[torch.Tensor], counts: list[int]) -> list[tuple[int, ...]]:
    """Each sublayer keeps its `count` units with the most Fisher information."""
    return [tuple(sorted(scores.topk(count).indices.tolist())) if count else () for scores, count in zip(fisher, counts)]


@torch.no_grad()
def rearrange(kept: tuple[int, ...], gradients: torch.Tensor) -> tuple[int, ...]:
    """`kept` exchanged greedily at the same count so that the removed units' summed gradients are smallest;
    `gradients`: (batches, units) mask gradients of one sublayer."""
    units = gradients.shape[1]
    if not kept or len(kept) == units:
        return kept
    grads = gradients.t().double()  # (units, batches)
    kept_set = set(kept)
    removed = [u for u in range(units) if u not in kept_set]
    by_fisher = [u for u in grads.pow(2).sum(1).argsort().tolist() if u in kept_set]
    for unit in by_fisher:  # each kept unit, least informative first, is tried in the removed set
        trial = removed + [unit]
        vectors = grads[trial]
        # remove from the trial set the unit whose absence leaves the smallest summed gradient
        back = int((vectors.sum(0, keepdim=True) - vectors).pow(2).sum(1).argmin())
        removed = trial[:back] + trial[back + 1:]
    return tuple(sorted(set(range(units)) - set(removed)))
