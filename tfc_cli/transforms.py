"""tfc.json schema 2: the ordered list of transforms a model went through, each `{op, version, ...}`.

Each op is registered with how to rebuild its shapes on a model built from config (before the weights load) and
is replayed in order, so two prunings (or a pruning then a quantization) rebuild exactly. Schema-1 manifests (one
slot per kind of change: `changes.pruning`, `changes.quantization`) are read as the equivalent list.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .errors import TfcError


@dataclass(frozen=True)
class Op:
    name: str
    version: int
    rebuild: Callable | None  # (model, record) -> None; None when the op leaves torch shapes alone (e.g. ONNX)


def _rebuild_prune(model, record: dict) -> None:
    from .arch import Keep, family_for
    from .arch.surgery import resize

    resize(family_for(model), Keep.from_record(record))


def _rebuild_quantize(model, record: dict) -> None:
    if record.get("backend") == "torch":
        from .quant.torch_int8 import prepare_for_loading

        prepare_for_loading(model, record["modules"])


# `layers` (whole layers kept, `kept` of `layers_before`) needs no rebuild: the config states the new depth. The
# records of earlier prunes still list every original layer; `as_built` drops the removed ones from them.
# `distill` records what a student was trained against; its shapes are the config's and the ops before it.
OPS = {op.name: op for op in (Op("prune", 1, _rebuild_prune), Op("quantize", 1, _rebuild_quantize),
                              Op("layers", 1, None), Op("distill", 1, None), Op("sparsify", 1, None))}


def transform(op: str, **record) -> dict:
    return {"op": op, "version": OPS[op].version} | record


def _from_schema1_pruning(p: dict) -> dict:
    return transform("prune", **{k: v for k, v in p.items() if k not in ("layers", "hidden_size_total")},
                     hidden_size_before=p["hidden_size_total"], group_size=1, sparsity_of_original=p.get("sparsity"),
                     prunable_params_original=p.get("prunable_params_total"),
                     layers=[{"heads": la["heads"], "heads_before": la["heads_total"], "kv_heads": la["heads"],
                              "kept_groups": list(range(la["heads"])), "ffn": la["ffn"], "ffn_before": la["ffn_total"]}
                             for la in p["layers"]])


def transforms_of(manifest: dict | None, where: str = "tfc.json") -> list[dict]:
    """The manifest's transforms in order, from either schema; malformed records are an error naming `where`."""
    if not manifest:
        return []
    try:
        if manifest.get("schema_version", 1) >= 2:
            found = list(manifest.get("transforms", []))
        else:
            changes = manifest.get("changes", {})
            found = ([_from_schema1_pruning(changes["pruning"])] if changes.get("pruning") else []) + (
                [transform("quantize", **changes["quantization"])] if changes.get("quantization") else [])
    except (KeyError, TypeError, AttributeError) as err:
        raise TfcError(f"{where}: malformed change record ({err})") from None
    for t in found:
        if not isinstance(t, dict) or t.get("op") not in OPS:
            raise TfcError(f"{where}: unknown transform {str(t)[:100]} (this tfc knows {', '.join(OPS)})")
        if not isinstance(t.get("version"), int) or t["version"] > OPS[t["op"]].version:
            raise TfcError(f"{where}: transform '{t['op']}' version {t.get('version')} is newer than this tfc understands")
    return found


def as_built(transforms: list[dict]) -> list[dict]:
    """`transforms` with each prune record cut to the layers that every later `layers` op kept: the per-layer
    shapes of the model as it is now, in its layer order."""
    result = [dict(t) for t in transforms]
    for i, t in enumerate(result):
        if t["op"] != "layers":
            continue
        for earlier in result[:i]:
            if earlier["op"] == "prune":
                earlier["layers"] = [earlier["layers"][k] for k in t["kept"]]
    return result


def replay(model, transforms: list[dict], where: str = "tfc.json") -> None:
    """Give a model freshly built from config the shapes `transforms` left (weights are loaded afterwards)."""
    try:
        transforms = as_built(transforms)
    except (KeyError, TypeError, IndexError) as err:
        raise TfcError(f"{where}: malformed 'layers' record ({err})") from None
    for t in transforms:
        rebuild = OPS[t["op"]].rebuild
        if rebuild is None:
            continue
        try:
            rebuild(model, t)
        except (KeyError, TypeError, IndexError) as err:
            raise TfcError(f"{where}: malformed '{t['op']}' record ({err})") from None


def graph_runtime(transforms: list[dict]) -> str:
    """The runtime an ONNX graph was made for: OpenVINO when the last quantization targeted it (NNCF's QDQ graph,
    quant/nncf_int8.py), else ONNX Runtime."""
    backends = [t.get("backend") for t in transforms if t["op"] == "quantize"]
    return "openvino" if backends and backends[-1] == "openvino" else "onnxruntime"


def has(transforms: list[dict], op: str) -> bool:
    return any(t["op"] == op for t in transforms)


def structure(transforms: list[dict]) -> dict | None:
    """What the report shows of the pruning: per layer kept heads and FFN units against the original model, the
    hidden size, and the prunable weights kept (the last prune's shapes over the first prune's originals)."""
    prunes = [t for t in as_built(transforms) if t["op"] == "prune"]
    if not prunes:
        return None
    first, last = prunes[0], prunes[-1]
    return {"method": last.get("method"), "hidden_size": last["hidden_size"],
            "hidden_size_total": first["hidden_size_before"], "head_dim": last.get("head_dim"),
            "prunable_params": last.get("prunable_params"),
            "prunable_params_total": first.get("prunable_params_original"),
            "sparsity": last.get("sparsity_of_original"), "prunings": len(prunes),
            "layers": [{"heads": b["heads"], "heads_total": a["heads_before"], "ffn": b["ffn"], "ffn_total": a["ffn_before"]}
                       for a, b in zip(first["layers"], last["layers"])]}


def original_prunable_params(transforms: list[dict]) -> int | None:
    prunes = [t for t in transforms if t["op"] == "prune"]
    return prunes[0].get("prunable_params_original") if prunes else None
