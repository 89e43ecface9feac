"""A pruned model that the plain transformers classes can build: when every layer kept the same number of heads,
key/value heads and FFN units (none removed whole), and only sizes the family's config can state changed, the
config.json written states them and the weights are an ordinary model.safetensors. Removed whole layers are always
stated (the config's layer count)."""
from __future__ import annotations

import copy

from .arch import BY_MODEL_TYPE


def plain_config(state):
    """The config that builds `state.model` exactly, or None when the plain classes cannot."""
    if state.model is None or not state.transforms or any(t["op"] not in ("prune", "layers", "distill", "sparsify") for t in state.transforms):
        return None
    family = BY_MODEL_TYPE.get(state.config.model_type)
    if family is None:
        return None
    dims = family(state.model).dims()
    heads = {dims.heads(i) for i in range(dims.num_layers)}
    if len(set(dims.groups)) != 1 or len(set(dims.ffn)) != 1 or 0 in dims.groups or 0 in dims.ffn:
        return None
    sizes = {"ffn": dims.ffn[0], "heads": heads.pop(), "kv_heads": dims.groups[0], "hidden": dims.hidden}
    config = copy.deepcopy(state.config)
    current = {"ffn": getattr(config, family.config_sizes.get("ffn", "intermediate_size"), None),
               "heads": config.num_attention_heads,
               "kv_heads": getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
               "hidden": config.hidden_size}
    changed = [k for k in sizes if sizes[k] != current[k]]
    if any(k not in family.config_sizes for k in changed):
        return None
    for key in changed:
        setattr(config, family.config_sizes[key], sizes[key])
    try:
        type(config).from_dict(config.to_dict())
    except Exception:  # noqa: BLE001 - the config classes validate with many kinds of error
        return None
    return config
