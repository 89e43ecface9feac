"""How much each attention group, FFN unit, hidden dim and whole layer matters, by one of four criteria, measured on
calibration batches of task data (no training):

- `magnitude`: the L2 norm of the weights the unit owns (arch/importance.py); needs no data.
- `activation`: the mean size of what the unit outputs on real tokens (Minitron, Muralidharan et al. 2024): a
  group's context vectors, an FFN unit's activation, a hidden dim of the residual stream; a whole layer by its
  block influence, 1 - cos(input, output) of the residual stream (ShortGPT, Men et al. 2024).
- `taylor`: |dL/dm|, the first-order change of the task loss when the unit's mask m goes from 1 to 0 (Molchanov et
  al. 2019), averaged over examples.
- `fisher`: the mean over examples of (dL_i/dm)^2, the empirical Fisher information of the mask (Kwon et al. 2022);
  per example, so it needs one backward pass each.

Masks are the CoFi gates (arch/gating.py) held at one, so every family is scored through its own description.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..arch import Family, Gates, GateSlot
from ..arch.gating import Gating
from ..arch.importance import magnitude_scores
from ..errors import TfcError

CRITERIA = ("magnitude", "activation", "taylor", "fisher")


@dataclass
class Scores:
    groups: list[torch.Tensor | None]  # per layer, per attention group (None: no attention sublayer)
    ffn: list[torch.Tensor | None]  # per layer, per FFN unit
    hidden: torch.Tensor  # per hidden dim
    layers: torch.Tensor | None  # per whole layer (None: the criterion cannot rank layers)
    # per calibration batch, the mask gradients of every (layer, group) and (layer, FFN unit): (batches, L, G) and
    # (batches, L, F); kept on request for mask rearrangement, which needs more than their squares' sum
    gradients: tuple[torch.Tensor, torch.Tensor] | None = None


def scores(model, family: Family, criterion: str, batches, loss_of, on_batch=lambda: None,
           keep_gradients: bool = False) -> Scores:
    """`batches`: calibration batches (dicts of tensors; one example each for `fisher`); `loss_of(model, batch)`:
    the task loss of a batch; `on_batch()` is called after each (progress); `keep_gradients` (taylor, fisher) keeps
    each batch's mask gradients in `Scores.gradients`."""
    if criterion == "magnitude":
        groups, ffn, hidden = magnitude_scores(family)
        return Scores(groups, ffn, hidden, None)
    if criterion == "activation":
        return _activation_scores(model, family, batches, on_batch)
    if criterion in ("taylor", "fisher"):
        return _gradient_scores(model, family, batches, loss_of, on_batch, criterion == "fisher", keep_gradients)
    raise TfcError(f"unknown criterion '{criterion}' (known: {', '.join(CRITERIA)})")


def _trim(values: torch.Tensor, counts: tuple[int, ...]) -> list[torch.Tensor | None]:
    """Rows of a padded (layers, max units) tensor cut to each layer's units; None where a layer has none."""
    return [None if n == 0 else values[i, :n].detach().cpu() for i, n in enumerate(counts)]


def _gradient_scores(model, family: Family, batches, loss_of, on_batch, squared: bool, keep: bool) -> Scores:
    dims = family.dims()
    device = next(model.parameters()).device
    ones = lambda *shape: torch.ones(*shape, device=device, requires_grad=True)  # noqa: E731
    gates = Gates(mha=ones(dims.num_layers), heads=ones(dims.num_layers, max(dims.max_groups, 1)),
                  ffn_layer=ones(dims.num_layers), ffn=ones(dims.num_layers, max(dims.max_ffn, 1)),
                  hidden=ones(dims.hidden))
    masks = [gates.heads, gates.ffn, gates.hidden, gates.mha, gates.ffn_layer]
    totals = [torch.zeros_like(m) for m in masks]
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:  # only the masks' gradients are needed
        p.requires_grad_(False)
    gating = Gating(family, GateSlot(gates))
    count = 0
    try:
        model.eval()  # no dropout: the score of a unit, not of a random sub-network
        for batch in batches:
            grads = torch.autograd.grad(loss_of(model, batch), masks, allow_unused=True)
            for total, grad in zip(totals, grads):
                if grad is not None:
                    total += grad.detach() ** 2 if squared else grad.detach()
            if keep:
                kept.append(tuple(torch.zeros_like(m).cpu() if g is None else g.detach().cpu()
                                  for m, g in zip(masks[:2], grads[:2])))
            count += 1
            on_batch()
    finally:
        gating.remove()
        for p in trainable:
            p.requires_grad_(True)
    if not count:
        raise TfcError("no calibration batches to score the model on")
    heads, ffn, hidden, mha, ffn_layer = (t / count if squared else (t / count).abs() for t in totals)
    gradients = (torch.stack([h for h, _ in kept]), torch.stack([f for _, f in kept])) if keep else None
    return Scores(_trim(heads, dims.groups), _trim(ffn, dims.ffn), hidden.cpu(), (mha + ffn_layer).cpu(), gradients)


@torch.no_grad()
def _activation_scores(model, family: Family, batches, on_batch) -> Scores:
    dims = family.dims()
    layers = family.layers()
    groups = [None if g == 0 else torch.zeros(g) for g in dims.groups]
    ffn = [None if f == 0 else torch.zeros(f) for f in dims.ffn]
    hidden, influence = torch.zeros(dims.hidden), torch.zeros(len(layers))
    state = {"mask": None, "tokens": 0}
    handles = []

    def real(x: torch.Tensor) -> torch.Tensor:
        """(real tokens, width) rows of a (B, T, width) activation."""
        return x[state["mask"].bool()].float()

    def context(i: int):
        def hook(_module, args):
            x = real(args[0])  # (N, groups * group_size * head_dim): the heads' context vectors
            groups[i] += x.reshape(len(x), dims.groups[i], -1).norm(dim=-1).sum(0).cpu()
        return hook

    def units(i: int):
        def hook(_module, args):
            ffn[i] += real(args[0]).abs().sum(0).cpu()
        return hook

    def block(i: int):
        def hook(_module, args, kwargs, output):
            x_in = real(args[0] if args else kwargs["hidden_states"])
            x_out = real(output[0] if isinstance(output, tuple) else output)
            influence[i] += (1 - torch.nn.functional.cosine_similarity(x_in, x_out, dim=-1)).sum().cpu()
            hidden.add_(x_out.abs().sum(0).cpu())
        return hook

    for i, layer in enumerate(layers):
        attn, mlp = family.attention_linears(layer), family.ffn_linears(layer)
        if attn is not None:
            handles.append(attn[3].register_forward_pre_hook(context(i)))
        if mlp is not None:
            handles.append(mlp[2].register_forward_pre_hook(units(i)))
        handles.append(layer.register_forward_hook(block(i), with_kwargs=True))
    try:
        model.eval()
        for batch in batches:
            state["mask"] = batch["attention_mask"]
            state["tokens"] += int(batch["attention_mask"].sum())
            model(**{k: v for k, v in batch.items() if k != "labels"})
            on_batch()
    finally:
        for handle in handles:
            handle.remove()
    n = max(state["tokens"], 1)
    scale = lambda values: [None if v is None else v / n for v in values]  # noqa: E731
    return Scores(scale(groups), scale(ffn), hidden / (n * len(layers)), influence / n)
