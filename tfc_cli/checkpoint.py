"""Compressed checkpoints: an HF folder (config.json, weights, tokenizer) plus the tfc.json manifest.

Weights are safetensors (torch) or model.onnx (ONNX Runtime, or OpenVINO); never pickles. `load()` rebuilds the exact
modules the manifest describes and loads the weights strictly: a missing or unexpected tensor is an error.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TfcError
from .model_info import MANIFEST, read_manifest
from .plain_config import plain_config
from .transforms import as_built, replay, structure, transforms_of
from .trust import LoadPolicy, check_local_weights, load_tokenizer

MANIFEST_SCHEMA = 2  # 2: an ordered list of transforms (transforms.py); 1: one slot per kind of change
SAFETENSORS = "model.safetensors"
# A torch model whose modules the plain transformers classes cannot build (pruned shapes, int8 layers) stores its
# weights under this name: `from_pretrained` then refuses the folder ("no file named model.safetensors") instead of
# loading it with every mismatched or missing tensor randomly initialised.
TFC_SAFETENSORS = "model.tfc.safetensors"
ONNX = "model.onnx"
# config.json sizes that a pruned model no longer has; the manifest keeps the ones its modules are built from.
_PRUNED_SIZES = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads")


@dataclass
class Checkpoint:
    folder: Path
    manifest: dict
    config: Any
    tokenizer: Any
    model: Any = None  # torch module, or an OnnxModel (called the same way) over model.onnx
    onnx: str | None = None  # path of model.onnx
    _runner: Any = field(default=None, repr=False)

    @property
    def runtime(self) -> str:
        return self.manifest["runtime"] if self.onnx else "torch"

    def runner(self):
        """tfc's runner of this model on its own runtime, made once."""
        from .runtimes import runner_for

        if self._runner is None:
            self._runner = self.model.runner if self.onnx else runner_for(self)
        return self._runner

    def predict(self, texts: str | list[str], max_new_tokens: int = 32) -> list[dict]:
        """Pipeline-like use on any runtime: [{"label", "score"}] per text for a classifier (inputs truncated at the
        tokenizer's model_max_length), [{"generated_text"}] for a causal LM (greedy)."""
        from . import predict
        from .hf_classes import is_causal_lm

        texts = [texts] if isinstance(texts, str) else list(texts)
        if is_causal_lm(self.config):
            return predict.generate(self.runner(), self.tokenizer, texts, max_new_tokens)
        return predict.classify(self.runner(), self.tokenizer, self.config, texts)

    @property
    def weights_path(self) -> Path:
        return Path(self.onnx) if self.onnx else self.folder / self.manifest.get("weights", SAFETENSORS)


def _config_to_write(state) -> tuple[Any, dict]:
    """(the config.json to write, the sizes the modules are built from when they differ from it).

    A pruned model's config.json states its real sizes (hidden size, the largest layer's heads and FFN units) rather
    than the original model's; per-layer sizes that differ are in tfc.json."""
    pruning = structure(state.transforms)
    if not pruning:
        return state.config, {}
    config = copy.deepcopy(state.config)
    layers = pruning["layers"]
    kv_heads = [t for t in as_built(state.transforms) if t["op"] == "prune"][-1]["layers"]
    pruned = {"hidden_size": pruning["hidden_size"], "intermediate_size": max((la["ffn"] for la in layers), default=0),
              "num_attention_heads": max((la["heads"] for la in layers), default=0),
              "num_key_value_heads": max((la["kv_heads"] for la in kv_heads), default=0)}
    built = {}
    for key in (k for k in _PRUNED_SIZES if hasattr(config, k)):
        original = getattr(config, key)
        setattr(config, key, pruned[key])
        if _config_valid(config):
            built[key] = original
        else:  # e.g. a hidden size the heads no longer divide: the config class would refuse to load it
            setattr(config, key, original)
    config.tfc_per_layer = {"heads": [la["heads"] for la in layers], "ffn_units": [la["ffn"] for la in layers],
                            "head_dim": pruning.get("head_dim"), "hidden_size": pruning["hidden_size"]}
    return config, built


def _config_valid(config) -> bool:
    try:
        type(config).from_dict(config.to_dict())
    except Exception:  # noqa: BLE001 - the config classes validate with many kinds of error
        return False
    return True


def save(state, folder: Path, manifest: dict) -> None:
    """Write `state` into `folder` (which must exist and be empty)."""
    from safetensors.torch import save_model

    plain = plain_config(state)
    config, built = (plain, {}) if plain is not None else _config_to_write(state)
    if state.onnx is None and state.transforms and plain is None:
        config.tfc_load = f"structure changed by tfc: load with tfc_cli.load(folder); weights in {TFC_SAFETENSORS}"
    config.save_pretrained(folder)
    state.tokenizer.save_pretrained(folder)
    if state.onnx is not None:
        (folder / ONNX).write_bytes(state.onnx)
        weights = ONNX
    else:
        weights = TFC_SAFETENSORS if state.transforms and plain is None else SAFETENSORS
        save_model(state.model, str(folder / weights), metadata={"format": "pt"})
    full = {"schema_version": MANIFEST_SCHEMA, "weights": weights, "runtime": state.runtime,
            "transforms": state.transforms} | ({"built_from_config": built} if built else {}) | (
        {"config_states_shapes": True} if plain is not None else {}) | manifest
    (folder / MANIFEST).write_text(json.dumps(full, indent=2, default=str))


def _build_torch_model(folder: Path, manifest: dict, config):
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from .hf_classes import model_class

    model = model_class(config).from_config(config, trust_remote_code=False)
    if not manifest.get("config_states_shapes"):  # else config.json already builds the pruned shapes
        replay(model, transforms_of(manifest, str(folder / MANIFEST)), str(folder / MANIFEST))
    path = folder / manifest.get("weights", SAFETENSORS)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise TfcError(f"{path}: cannot read weights ({err})") from None
    expected = model.state_dict()
    missing = sorted(k for k, group in _sharing(model).items() if not group & set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        parts = [f"missing {', '.join(missing[:5])}" if missing else "",
                 f"unexpected {', '.join(unexpected[:5])}" if unexpected else "",
                 "shape mismatch " + ", ".join(f"{k} {tuple(tensors[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong[:5])
                 if wrong else ""]
        raise TfcError(f"{path} does not match the model described by config.json and {MANIFEST}: "
                       + "; ".join(p for p in parts if p))
    model.load_state_dict(tensors, strict=False)  # strictness checked above, tied weights allowed
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model.eval()


def _sharing(model) -> dict[str, set[str]]:
    """Each state-dict name with the names that share its storage (safetensors stores a shared tensor once, under
    any one of its names)."""
    by_ptr: dict[int, set[str]] = {}
    names = model.state_dict(keep_vars=True)
    for name, tensor in names.items():
        by_ptr.setdefault(tensor.data_ptr() if tensor.numel() else id(tensor), set()).add(name)
    return {name: by_ptr[tensor.data_ptr() if tensor.numel() else id(tensor)] for name, tensor in names.items()}


def load(path: str | Path) -> Checkpoint:
    """Load a tfc checkpoint (or a plain HF classifier folder) exactly as saved."""
    from transformers import AutoConfig

    from .hf_classes import quiet_transformers

    folder = Path(path)
    if not folder.is_dir():
        raise TfcError(f"{folder}: no such checkpoint folder")
    quiet_transformers()
    manifest = read_manifest(folder) or {"weights": SAFETENSORS, "runtime": "torch", "transforms": []}
    if manifest.get("schema_version", MANIFEST_SCHEMA) > MANIFEST_SCHEMA:
        raise TfcError(f"{folder / MANIFEST}: schema {manifest['schema_version']} is newer than this tfc understands")
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
        tokenizer = load_tokenizer(str(folder))
    except (OSError, ValueError) as err:
        raise TfcError(f"{folder}: {str(err).splitlines()[0]}") from None
    built = manifest.get("built_from_config") or {}
    if not isinstance(built, dict) or not all(k in _PRUNED_SIZES and isinstance(v, int) for k, v in built.items()):
        raise TfcError(f"{folder / MANIFEST}: malformed 'built_from_config'")
    for key, value in built.items():  # the sizes the pruned modules are rebuilt from (config.json has the pruned ones)
        setattr(config, key, value)
    for key in ("tfc_per_layer", "tfc_load"):
        if hasattr(config, key):
            delattr(config, key)
    if manifest.get("runtime") in ("onnxruntime", "openvino"):
        onnx = folder / manifest.get("weights", ONNX)
        if not onnx.is_file():
            raise TfcError(f"{onnx}: missing (named by {MANIFEST})")
        from .onnx_model import OnnxModel

        return Checkpoint(folder, manifest, config, tokenizer, model=OnnxModel(str(onnx), config, manifest["runtime"]),
                          onnx=str(onnx))
    return Checkpoint(folder, manifest, config, tokenizer, model=_build_torch_model(folder, manifest, config))


def verify_reload(state, folder: Path, batch: dict[str, np.ndarray], atol: float = 1e-4) -> tuple[Checkpoint, float]:
    """Reload `folder` and compare its logits with the in-memory model on `batch`.

    Returns the reloaded checkpoint and the max logit difference; a difference above `atol` is an error.
    """
    from .runtimes import runner_for

    reloaded = load(folder)
    expected, got = runner_for(state)(batch), runner_for(reloaded)(batch)
    diff = float(np.max(np.abs(expected - got))) if expected.shape == got.shape else float("inf")
    if not diff <= atol:
        raise TfcError(f"the saved model in {folder} does not reproduce the in-memory model "
                       f"(max logit difference {diff:.3g} > {atol}); nothing was written")
    return reloaded, diff


def open_model(spec: str, require_head: bool = True, policy: LoadPolicy = LoadPolicy()) -> Checkpoint:
    """A tfc checkpoint, a plain HF folder, a hub id or demo:NAME, ready for eval or bench."""
    from transformers import AutoConfig

    from .model_info import model_info
    from .hf_classes import model_class, quiet_transformers
    from .strict_load import align_pad_token, check_tokenizer_fits, from_pretrained_strictly

    info = model_info(spec, policy)
    if info.manifest is not None:
        return load(info.source)
    if require_head and not info.has_classification_head and not info.is_causal_lm:
        raise TfcError(f"model '{spec}' has no trained classification head; evaluate a fine-tuned checkpoint "
                       "(e.g. the output of `tfc compress`)")
    quiet_transformers()
    check_local_weights(info.source, policy)
    try:
        tokenizer = load_tokenizer(info.source, policy)
        config = AutoConfig.from_pretrained(info.source, **policy.config_kwargs())
        fresh_head = not info.has_classification_head and not info.is_causal_lm  # timing a base model: any head will do
        model = from_pretrained_strictly(model_class(config), info.source, fresh_head=fresh_head, dtype="float32",
                                         **policy.weights_kwargs()).eval()
    except (OSError, ValueError) as err:
        raise TfcError(f"cannot load model '{spec}': {str(err).splitlines()[0]}") from None
    check_tokenizer_fits(tokenizer, model.config, info.source)
    if not info.is_causal_lm:
        align_pad_token(model, tokenizer, info.source)
    folder = Path(info.source) if Path(info.source).is_dir() else Path(".")
    return Checkpoint(folder, {"runtime": "torch", "transforms": []}, model.config, tokenizer, model=model)
