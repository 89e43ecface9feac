"""Layer-wise mask tuning (Kwon et al. 2022): after the search zeroed some heads and FFN units, the surviving units
of each sublayer get real-valued scales m_j, chosen by least squares so that the pruned sublayer reproduces what the
unpruned model writes to its residual stream.

A sublayer's output is linear in its units' scales: o = sum_j m_j c_j + bias, where c_j is unit j's contribution
(a group's context through its columns of o; an FFN unit's activation times its column of down). Layer by layer,
the pruned model (with the layers before already tuned) is matched to the unpruned one:

    min_m || sum_j m_j c_j + bias + r_pruned - (o_unpruned + r_unpruned) ||^2   over the calibration tokens,

where r is the residual the sublayer's output is added to. Including r_unpruned - r_pruned lets each layer make up
for the error left by the ones before. (Under a norm after the sublayer's output, as in Gemma, the match is of o
alone.) The scales go into the gates, and folding them into the weights makes them free at inference.
"""
from __future__ import annotations

import torch

from .. import progress
from ..arch import Family, Gates, GateSlot
from ..arch.gating import Gating

MAX_SCALE = 10.0  # a solution beyond this is ill-conditioned (Kwon et al. stop there too); the sublayer keeps 1s
RIDGE = 1e-6  # relative to the mean diagonal of the normal equations, for a solution when units are collinear


class _Captured(Exception):
    """Stops the forward pass once the sublayer being matched has been seen."""


def tune_masks(model, family: Family, gates: Gates, batches, classifier: bool = False) -> tuple[Gates, dict]:
    """`gates`: 0/1 head and FFN gates from the search; returns gates whose non-zero entries are tuned, and per
    sublayer the relative residual error before and after (or why it kept its 1s). For a `classifier`, the last
    layer is matched only at the token its head reads (Kwon et al. do the same): the others no longer matter."""
    dims = family.dims()
    tuned = Gates(heads=gates.heads.clone().float(), ffn=gates.ffn.clone().float())
    report = {}
    model.eval()
    with progress.bar("prune: tuning masks by least squares", dims.num_layers) as advance:
        for layer in range(dims.num_layers):
            only = family.classified_token if classifier and layer == dims.num_layers - 1 else None
            teacher = {kind: _capture(model, family, None, layer, kind, batches, only) for kind in ("mha", "ffn")}
            for kind, units in (("mha", tuned.heads), ("ffn", tuned.ffn)):
                kept = units[layer].nonzero().squeeze(-1)
                if len(kept) == 0:
                    continue
                student = _capture(model, family, tuned, layer, kind, batches, only)
                scales, note = _solve(family, layer, kind, kept, student, teacher[kind])
                if scales is not None:
                    units[layer, kept] = scales
                report[f"{kind}_{layer}"] = note
            advance()
    return tuned, report


def _writer(family: Family, layer_module, kind: str):
    linears = family.attention_linears(layer_module) if kind == "mha" else family.ffn_linears(layer_module)
    return None if linears is None else linears[-1]


@torch.no_grad()
def _capture(model, family: Family, gates: Gates | None, layer: int, kind: str, batches, only: str | None = None
             ) -> list[dict]:
    """Per batch, at the real tokens (or `only` the first or last real one of each row): the writer's input before
    the unit gates (N, units * width), its output (N, hidden), and the residual its output is added to (None under a
    norm after the output)."""
    gating = None if gates is None else Gating(family, GateSlot(gates))
    try:
        layer_module = family.layers()[layer]
        writer = _writer(family, layer_module, kind)
        norms = family.sublayer_norms(layer_module)[kind]
        sandwich = family.pre_norm and len(norms) > 1
        norm = None if writer is None or sandwich or not norms else getattr(*norms[0])
        seen: dict = {}

        def done():
            if "out" in seen and (norm is None or "norm_in" in seen):
                raise _Captured

        def before(_module, args):
            seen["in"] = args[0]

        def after(_module, _args, out):
            seen["out"] = out
            done()

        def norm_in(_module, args):
            seen["norm_in"] = args[0]
            done()

        handles = [] if writer is None else [writer.register_forward_pre_hook(before, prepend=True),
                                             writer.register_forward_hook(after)]
        if norm is not None:
            handles.append(norm.register_forward_pre_hook(norm_in))
        rows = []
        try:
            for batch in batches:
                seen.clear()
                try:
                    model(**{k: v for k, v in batch.items() if k != "labels"})
                except _Captured:
                    pass
                real = _tokens(batch["attention_mask"], only)
                if "out" not in seen:
                    rows.append(None)  # the sublayer is gone here
                    continue
                residual = None
                if norm is not None:  # post-norm: the norm sees output + residual; pre-norm: the residual itself
                    residual = seen["norm_in"] - (0 if family.pre_norm else seen["out"])
                rows.append({"in": seen["in"][real].float(), "out": seen["out"][real].float(),
                             "residual": None if residual is None else residual[real].float()})
        finally:
            for handle in handles:
                handle.remove()
        return rows
    finally:
        if gating is not None:
            gating.remove()


def _tokens(attention_mask: torch.Tensor, only: str | None) -> torch.Tensor:
    """The (B, T) selection of tokens to match: every real one, or the first or last real one of each row."""
    real = attention_mask.bool()
    if only is None:
        return real
    chosen = torch.zeros_like(real)
    rows = torch.arange(len(real))
    if only == "first":
        chosen[rows, real.int().argmax(1)] = True
    else:
        chosen[rows, real.shape[1] - 1 - real.int().flip(1).argmax(1)] = True
    return chosen


@torch.no_grad()
def _solve(family: Family, layer: int, kind: str, kept: torch.Tensor, student: list, teacher: list):
    """The least-squares scales of the `kept` units, or None (and why) when they are not to be trusted."""
    dims = family.dims()
    writer = _writer(family, family.layers()[layer], kind)
    width = dims.group_size * dims.head_dim if kind == "mha" else 1
    weight = writer.weight.float()  # (hidden, units * width)
    columns = weight.t().reshape(-1, width, weight.shape[0])[kept]  # (k, width, hidden)
    bias = 0 if writer.bias is None else writer.bias.float()
    k = len(kept)
    ata, atb = torch.zeros(k, k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    target_norm, before = 0.0, 0.0
    for s, t in zip(student, teacher):
        if s is None or t is None:
            continue
        goal = t["out"] - bias  # what the kept units should write, plus the residual's difference
        if s["residual"] is not None and t["residual"] is not None:
            goal = goal + t["residual"] - s["residual"]
        x = s["in"].reshape(len(s["in"]), -1, width)[:, kept]  # (N, k, width)
        if kind == "ffn":  # an FFN unit's contribution is a scalar activation times one column
            x = x.squeeze(-1)  # (N, k)
            gram = columns.squeeze(1) @ columns.squeeze(1).t()  # (k, k): column dot products
            ata += ((x.t() @ x) * gram).double()
            atb += (x * (goal @ columns.squeeze(1).t())).sum(0).double()
            contribution_sum = x @ columns.squeeze(1)
        else:
            contributions = torch.einsum("nkw,kwh->nkh", x, columns)  # (N, k, hidden)
            ata += torch.einsum("nkh,nlh->kl", contributions, contributions).double()
            atb += torch.einsum("nkh,nh->k", contributions, goal).double()
            contribution_sum = contributions.sum(1)
        target_norm += float(goal.pow(2).sum())
        before += float((contribution_sum - goal).pow(2).sum())
    if target_norm == 0:
        return None, "no calibration tokens"
    ridge = RIDGE * float(ata.diagonal().mean()) or RIDGE
    try:
        scales = torch.linalg.solve(ata + ridge * torch.eye(k, dtype=torch.float64), atb)
    except RuntimeError:
        return None, "singular; kept 1s"
    if not torch.isfinite(scales).all() or float(scales.abs().max()) > MAX_SCALE:
        return None, f"scales beyond +-{MAX_SCALE:g}; kept 1s"
    # residual error after: ||A m - b||^2 = m'AtA m - 2 m'Atb + ||b||^2
    after = float(scales @ ata @ scales - 2 * scales @ atb) + target_norm
    note = {"relative_error_before": round((before / target_norm) ** 0.5, 4),
            "relative_error_after": round((max(after, 0.0) / target_norm) ** 0.5, 4)}
    return scales.float(), note
