"""Family-neutral structured surgery: fold gate values into the weights, then remove what they zeroed.

Parameters are sliced in place (the modules keep their class, buffers and hooks), so a model rebuilt from its
config and replayed through `resize` has exactly the shapes of the pruned one.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import TfcError
from .base import Gates, Keep
from .family import Family
from .gating import dead


def _index(indices, device) -> torch.Tensor | None:
    return None if indices is None else torch.as_tensor(list(indices), dtype=torch.long, device=device)


def slice_linear_(linear: nn.Linear, rows=None, cols=None) -> nn.Linear:
    """Keep only `rows` (output features) and `cols` (input features) of `linear`, in place."""
    device = linear.weight.device
    weight = linear.weight.data
    if rows is not None:
        weight = weight.index_select(0, _index(rows, device))
    if cols is not None:
        weight = weight.index_select(1, _index(cols, device))
    linear.weight = nn.Parameter(weight.clone(), requires_grad=linear.weight.requires_grad)
    if linear.bias is not None and rows is not None:
        linear.bias = nn.Parameter(linear.bias.data.index_select(0, _index(rows, device)).clone(),
                                   requires_grad=linear.bias.requires_grad)
    linear.out_features, linear.in_features = weight.shape
    return linear


def _slice_norm_(norm: nn.Module, dims) -> None:
    index = _index(dims, norm.weight.device)
    for name in ("weight", "bias"):
        param = getattr(norm, name, None)
        if isinstance(param, nn.Parameter):
            setattr(norm, name, nn.Parameter(param.data.index_select(0, index).clone()))
    if hasattr(norm, "normalized_shape"):
        norm.normalized_shape = (len(dims),)


def _slice_embedding_(table: nn.Embedding, dims) -> None:
    table.weight = nn.Parameter(table.weight.data.index_select(1, _index(dims, table.weight.device)).clone())
    table.embedding_dim = len(dims)


@torch.no_grad()
def fold(family: Family, gates: Gates) -> Keep:
    """Multiply gate values into the weights (call with the gates removed); returns what the non-zero gates keep.

    After folding, the model with 0/1 gates computes what the gated model computed with `gates`."""
    dims = family.dims()
    hidden = gates.hidden
    groups_keep, ffn_keep = [], []
    for i, layer in enumerate(family.layers()):
        attn, ffn = family.attention_linears(layer), family.ffn_linears(layer)
        for writer, kind, count, width, keep in (
                (None if attn is None else attn[3], "mha", dims.groups[i], dims.group_size * dims.head_dim, groups_keep),
                (None if ffn is None else ffn[2], "ffn", dims.ffn[i], 1, ffn_keep)):
            if writer is None or dead(gates, i, kind):
                keep.append(())
                continue
            device = writer.weight.device
            unit_gates, layer_gates = (gates.heads, gates.mha) if kind == "mha" else (gates.ffn, gates.ffn_layer)
            units = (torch.ones(count) if unit_gates is None else unit_gates[i][:count].float()).to(device)
            keep.append(tuple(units.nonzero().squeeze(-1).tolist()))
            row_scale = (1.0 if layer_gates is None else float(layer_gates[i])) * (
                torch.ones(dims.hidden) if hidden is None else hidden.float()).to(device)
            writer.weight.mul_(row_scale[:, None] * units.repeat_interleave(width)[None, :])
            if writer.bias is not None:
                writer.bias.mul_(row_scale)
    if hidden is not None:
        for table in family.embedding_tables():
            table.weight.mul_(hidden.float().to(table.weight.device)[None, :])
        slot = family.embedding_norm()
        if slot is not None:
            norm = getattr(*slot)
            for param in (norm.weight, getattr(norm, "bias", None)):
                if param is not None:
                    param.mul_(hidden.float().to(param.device))
    alive = None if hidden is None else tuple(hidden.nonzero().squeeze(-1).tolist())
    if alive is not None and not alive:
        raise TfcError("every hidden dimension was pruned; lower target_sparsity or disable hidden pruning")
    if alive is not None and len(alive) == dims.hidden:
        alive = None
    return Keep(tuple(groups_keep), tuple(ffn_keep), alive)


@torch.no_grad()
def resize(family: Family, keep: Keep) -> None:
    """Remove everything `keep` does not name: attention groups, FFN units, whole sublayers and hidden dims."""
    dims, h = family.dims(), keep.hidden
    gs, hd = dims.group_size, dims.head_dim
    tied = family.head_tied()
    for layer, groups, units in zip(family.layers(), keep.groups, keep.ffn):
        attn = family.attention_linears(layer)
        if attn is not None and not groups:
            family.remove_attention(layer)
        elif attn is not None:
            q, k, v, o = attn
            heads = [g * gs + j for g in groups for j in range(gs)]
            q_rows = [head * hd + j for head in heads for j in range(hd)]
            kv_rows = [g * hd + j for g in groups for j in range(hd)]
            slice_linear_(q, rows=q_rows, cols=h)
            slice_linear_(k, rows=kv_rows, cols=h)
            slice_linear_(v, rows=kv_rows, cols=h)
            slice_linear_(o, rows=h, cols=q_rows)
            family.set_heads(layer, heads)
        ffn = family.ffn_linears(layer)
        if ffn is not None and not units:
            family.remove_ffn(layer)
        elif ffn is not None:
            up, gate, down = ffn
            for reader in (up, gate):
                if reader is not None:
                    slice_linear_(reader, rows=units, cols=h)
            slice_linear_(down, rows=h, cols=units)
        if h is not None:
            norms = family.sublayer_norms(layer)
            for parent, name in norms["mha"] + norms["ffn"]:
                _slice_norm_(getattr(parent, name), h)
    if h is None:
        return
    tables = family.embedding_tables()
    for table in tables:
        _slice_embedding_(table, h)
    for parent, name in family.final_norms() + [s for s in [family.embedding_norm()] if s is not None]:
        _slice_norm_(getattr(parent, name), h)
    for head in family.head_linears():
        if tied:
            head.weight, head.in_features = tables[0].weight, len(h)
        else:
            slice_linear_(head, cols=h)


# per-layer lists some configs keep beside the layer count (Gemma 3 and Qwen2: sliding or full attention per layer)
_PER_LAYER_CONFIG = ("layer_types",)


def keep_layers(family: Family, kept: list[int]) -> None:
    """Keep only the whole layers `kept` (in order), in place: the layer list, each layer's index (the KV cache and
    the attention pattern are looked up by it) and the config's layer count and per-layer lists. The config then
    states the new depth, so a model built from it has exactly these layers."""
    total = len(family.layers())
    if not kept or sorted(set(kept)) != list(kept) or kept[0] < 0 or kept[-1] >= total:
        raise TfcError(f"layers to keep {list(kept)}: they must be increasing indices in 0..{total - 1}, at least one")
    parent, name = family.layer_list()
    layers = getattr(parent, name)
    setattr(parent, name, nn.ModuleList([layers[i] for i in kept]))
    for new_index, layer in enumerate(getattr(parent, name)):
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index
    config = family.config
    for key in _PER_LAYER_CONFIG:
        values = getattr(config, key, None)
        if isinstance(values, list) and len(values) == total:
            setattr(config, key, [values[i] for i in kept])
    config.num_hidden_layers = len(kept)


def factorize_linear(linear: nn.Linear, rank: int) -> nn.Sequential:
    """`linear` replaced by two, `in -> rank -> out`, through its truncated SVD: the best rank-`rank` approximation
    of the weight in the Frobenius norm (Eckart-Young); the bias stays on the second. At full rank the output is
    the same up to float rounding. The caller puts the result where `linear` was (`Family` lists the Linears)."""
    out_features, in_features = linear.weight.shape
    if not 1 <= rank <= min(out_features, in_features):
        raise TfcError(f"rank {rank} for a {in_features} -> {out_features} Linear: it must be 1 to "
                       f"{min(out_features, in_features)}")
    u, s, vh = torch.linalg.svd(linear.weight.data.double(), full_matrices=False)
    root = s[:rank].sqrt()
    first = nn.Linear(in_features, rank, bias=False, device=linear.weight.device, dtype=linear.weight.dtype)
    second = nn.Linear(rank, out_features, bias=linear.bias is not None, device=linear.weight.device,
                       dtype=linear.weight.dtype)
    with torch.no_grad():
        first.weight.copy_(root[:, None] * vh[:rank])  # the singular values split evenly between the two factors
        second.weight.copy_(u[:, :rank] * root[None, :])
        if linear.bias is not None:
            second.bias.copy_(linear.bias)
    return nn.Sequential(first, second)
