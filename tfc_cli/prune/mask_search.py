"""Retraining-free pruning (Kwon et al. 2022, "A Fast Post-Training Pruning Framework for Transformers"): Fisher
information of the head and FFN-unit masks, a mask search under a cost budget, mask rearrangement, layer-wise
least-squares mask tuning, then physical removal. No weights are trained; the tuned masks are folded into them."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .. import progress
from ..bench import MachineLoad, ratio_interval
from ..arch import Family, Gates, Keep, family_for
from ..arch.surgery import fold, resize
from .costs import CostTable, warn_if_disturbed
from .scores import Scores, scores
from .search import keep_from_counts, rearrange, removal_losses, search_counts
from .tune import tune_masks


@dataclass
class SearchResult:
    keep: Keep  # what the pruned model kept
    predicted_cost: float  # by the cost table
    tuning: dict  # per sublayer, the least-squares fit (tune.tune_masks)
    found: Scores  # the Fisher information and gradients, for another search of the same model


def mask_search(model, family: Family, table: CostTable, budget: float, fisher_batches, tune_batches, loss_of,
                validate, rearranged: bool = True, tuned: bool = True, whole: bool = False,
                found: Scores | None = None) -> SearchResult:
    """Prune `model` in place so that its cost by `table` is at most `budget`. With `tuned`, the masks with and
    without least-squares tuning are both scored by `validate(model) -> tasks.Score` and the better is kept: on
    MiniLM-L6 at 1.5x, tuning did not help (test 0.8205 tuned, 0.8268 untuned; validation agreed), while Kwon et al.
    measured it helping BERT-base. `found`: the Fisher information of an earlier search of the same model."""
    dims = family.dims()
    if found is None:
        with progress.bar("prune: Fisher information of the masks", len(fisher_batches)) as advance:
            found = scores(model, family, "fisher", fisher_batches, loss_of, on_batch=advance, keep_gradients=True)
    fisher = [s for pair in zip(found.groups, found.ffn) for s in pair]
    head_grads, ffn_grads = found.gradients
    per_sublayer = [grads[:, i, :n] for i in range(dims.num_layers)
                    for grads, n in ((head_grads, dims.groups[i]), (ffn_grads, dims.ffn[i]))]
    counts = search_counts(table, [removal_losses(g) for g in per_sublayer], budget, whole)
    kept = keep_from_counts(fisher, counts)
    if rearranged:
        kept = [rearrange(units, grads) for units, grads in zip(kept, per_sublayer)]
    keep = Keep(tuple(kept[0::2]), tuple(kept[1::2]), None)
    gates = Gates(heads=_mask(keep.groups, dims.max_groups), ffn=_mask(keep.ffn, dims.max_ffn))
    notes = {}
    if tuned:
        tuned_gates, notes = tune_masks(model, family, gates, tune_batches, classifier=True)
        scored = {name: validate(_pruned_copy(model, g)) for name, g in (("searched", gates), ("tuned", tuned_gates))}
        notes = {"sublayers": notes, "validation": {name: score.value for name, score in scored.items()},
                 "kept": "tuned" if scored["tuned"].better_than(scored["searched"]) else "searched"}
        gates = tuned_gates if notes["kept"] == "tuned" else gates
    keep = fold(family, gates)
    resize(family, keep)
    return SearchResult(keep, table.total(counts[0::2], counts[1::2]), notes, found)


def _pruned_copy(model, gates: Gates):
    pruned = copy.deepcopy(model)
    family = family_for(pruned)
    resize(family, fold(family, gates))
    return pruned


def _mask(kept: tuple[tuple[int, ...], ...], width: int) -> torch.Tensor:
    mask = torch.zeros(len(kept), max(width, 1))
    for layer, units in enumerate(kept):
        mask[layer, list(units)] = 1.0
    return mask


def measured_speedup(original, pruned, timer, rounds: int = 30) -> dict:
    """Median latency ratio original / pruned, the two timed interleaved (costs.Timer), with what else ran."""
    runs = {"original": timer.runner(original), "pruned": timer.runner(pruned)}
    with MachineLoad() as load:
        times = timer.interleaved(runs, rounds)
    warn_if_disturbed(load.result | {"threads": timer.threads}, "the measured speedup")
    result = ratio_interval(times["original"], times["pruned"])
    return {"speedup": round(result["ratio"], 3), "low": round(result["low"], 3), "high": round(result["high"], 3),
            "original_ms": round(float(np.median(times["original"])), 3),
            "pruned_ms": round(float(np.median(times["pruned"])), 3),
            "other_processes_cpu_cores": load.result["other_processes_cpu_cores"]}
