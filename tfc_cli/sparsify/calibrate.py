"""What the Linears of one layer see on calibration data, with the layers before it already sparsified (so each
layer's weights are fitted to the inputs it will really get, as SparseGPT and Wanda do layer by layer)."""
from __future__ import annotations

import torch
from torch import nn

from ..arch import Family


class _LayerDone(Exception):
    """Stops the forward pass after the layer being calibrated."""


def layer_linears(family: Family, layer: nn.Module) -> dict[str, nn.Linear]:
    """The attention and FFN Linears of a layer, by role."""
    found = {}
    attn, ffn = family.attention_linears(layer), family.ffn_linears(layer)
    for names, linears in ((("q", "k", "v", "o"), attn), (("up", "gate", "down"), ffn)):
        for name, linear in zip(names, linears or ()):
            if linear is not None:
                found[name] = linear
    return found


@torch.no_grad()
def input_statistics(model, family: Family, index: int, batches, hessian: bool) -> dict[str, torch.Tensor]:
    """Per Linear of layer `index`: the sum over real calibration tokens of x x^T (`hessian`), else of x^2 per input
    feature (Wanda's squared input norms)."""
    layer = family.layers()[index]
    linears = layer_linears(family, layer)
    sums: dict[str, torch.Tensor] = {}
    state = {"mask": None}

    def collect(name: str):
        def hook(_module, args):
            x = args[0][state["mask"]].double()  # (real tokens, in)
            value = x.t() @ x if hessian else (x * x).sum(0)
            sums[name] = value if name not in sums else sums[name] + value
        return hook

    def stop(*_):
        raise _LayerDone

    handles = [linear.register_forward_pre_hook(collect(name)) for name, linear in linears.items()]
    handles.append(layer.register_forward_hook(stop))
    try:
        model.eval()
        for batch in batches:
            state["mask"] = batch["attention_mask"].bool()
            try:
                model(**{k: v for k, v in batch.items() if k != "labels"})
            except _LayerDone:
                pass
    finally:
        for handle in handles:
            handle.remove()
    return sums
