"""Where a model comes from and what its config says, without loading any weights."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .assets import asset_path
from .errors import TfcError
from .trust import LoadPolicy

MANIFEST = "tfc.json"


def resolve_model(spec: str) -> str:
    """demo:NAME -> the asset folder; an existing folder -> itself; anything else is taken as a hub id."""
    if spec.startswith("demo:"):
        return str(asset_path(spec[len("demo:"):]))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise TfcError(f"{path}: not a model folder (no config.json)")
        return str(path)
    return spec


@dataclass(frozen=True)
class ModelInfo:
    source: str
    model_type: str
    architectures: tuple[str, ...]
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    num_labels: int
    manifest: dict | None  # tfc.json when the model is a tfc checkpoint

    @property
    def has_classification_head(self) -> bool:
        return any(a.endswith("ForSequenceClassification") for a in self.architectures)

    @property
    def is_causal_lm(self) -> bool:
        return any(a.endswith("ForCausalLM") for a in self.architectures)

    @property
    def changes(self) -> dict:
        return (self.manifest or {}).get("changes", {})

    @property
    def quantized(self) -> bool:
        return bool(self.changes.get("quantization"))

    @property
    def pruned(self) -> bool:
        return bool(self.changes.get("pruning"))


def read_manifest(folder: str | Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise TfcError(f"{path}: not valid JSON ({err})") from None


def model_info(spec: str, policy: LoadPolicy = LoadPolicy()) -> ModelInfo:
    from transformers import AutoConfig

    source = resolve_model(spec)
    try:
        config = AutoConfig.from_pretrained(source, **policy.config_kwargs())
    except OSError as err:
        raise TfcError(f"cannot read the config of model '{spec}': {str(err).splitlines()[0]}") from None
    except ValueError as err:
        raise TfcError(f"model '{spec}': {err}") from None
    get = lambda *names: next((getattr(config, n) for n in names if getattr(config, n, None) is not None), 0)  # noqa: E731
    return ModelInfo(
        source=source,
        model_type=config.model_type,
        architectures=tuple(config.architectures or ()),
        num_layers=get("num_hidden_layers", "n_layer"),
        hidden_size=get("hidden_size", "n_embd"),
        num_heads=get("num_attention_heads", "n_head"),
        intermediate_size=get("intermediate_size", "n_inner"),
        vocab_size=get("vocab_size"),
        num_labels=config.num_labels,
        manifest=read_manifest(source) if Path(source).is_dir() else None,
    )
