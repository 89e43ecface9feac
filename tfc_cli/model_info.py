"""Where a model comes from and what its config says, without loading any weights."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .assets import asset_path
from .errors import HubUnavailable, ModelNotFound, TfcError, UsageError
from .labels import head_labels
from .trust import LoadPolicy

MANIFEST = "tfc.json"


def looks_like_path(spec: str) -> bool:
    """A hub id is NAME or OWNER/NAME; anything with a leading ./ ../ / ~, a backslash, more slashes or a trailing
    slash can only be a local path."""
    return spec.startswith((".", "/", "~")) or "\\" in spec or spec.count("/") > 1 or spec.endswith("/")


def resolve_model(spec: str) -> str:
    """demo:NAME -> the asset folder; an existing folder -> itself; a path that does not exist is an error; anything
    else is taken as a hub id."""
    if spec.startswith("demo:"):
        return str(asset_path(spec[len("demo:"):]))
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ModelNotFound(f"{path}: not a model folder (no config.json)")
        return str(path)
    if looks_like_path(spec):
        raise ModelNotFound(f"{spec}: no such model folder")
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
    label_names: tuple[str, ...] = ()  # a classification head's id2label, in id order
    max_positions: int | None = None  # the longest sequence the position embeddings allow
    head_problem: str | None = None  # why the head cannot be measured as a single-label classifier

    def position_problem(self, tokens: int, what: str) -> str | None:
        if self.max_positions is not None and tokens > self.max_positions:
            return f"{what} is {tokens} tokens, but model positions allow at most {self.max_positions}"
        return None

    @property
    def has_classification_head(self) -> bool:
        return any(a.endswith("ForSequenceClassification") for a in self.architectures)

    @property
    def is_causal_lm(self) -> bool:
        return any(a.endswith("ForCausalLM") for a in self.architectures)

    @property
    def transforms(self) -> list[dict]:
        from .transforms import transforms_of

        return transforms_of(self.manifest, f"{self.source}/{MANIFEST}")

    @property
    def quantized(self) -> bool:
        return any(t["op"] == "quantize" for t in self.transforms)

    @property
    def pruned(self) -> bool:
        return any(t["op"] == "prune" for t in self.transforms)


def read_manifest(folder: str | Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TfcError(f"{path}: not valid JSON ({err})") from None
    return check_manifest(manifest, path)


_RUNTIMES = ("torch", "onnxruntime", "openvino")


def check_manifest(manifest, path: Path) -> dict:
    """The fields `load` relies on, checked: an object; `weights` a file name inside the folder (never a path that
    leads out of it); a known runtime; `changes` an object."""
    if not isinstance(manifest, dict):
        raise TfcError(f"{path}: not a tfc manifest (a JSON {type(manifest).__name__}, not an object)")
    version = manifest.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise TfcError(f"{path}: schema_version must be an integer, got {version!r}")
    weights = manifest.get("weights", "model.safetensors")
    if not isinstance(weights, str) or not weights or Path(weights).name != weights or weights in (".", ".."):
        raise TfcError(f"{path}: 'weights' must name a file in this folder, got {str(weights)[:200]!r}")
    target = path.parent / weights
    if target.is_symlink() and path.parent.resolve() not in target.resolve().parents:
        raise TfcError(f"{path}: 'weights' ({weights}) is a link that leads out of the folder")
    if manifest.get("runtime", "torch") not in _RUNTIMES:
        raise TfcError(f"{path}: 'runtime' must be one of {', '.join(_RUNTIMES)}, got {str(manifest.get('runtime'))[:100]!r}")
    if not isinstance(manifest.get("changes", {}), dict):
        raise TfcError(f"{path}: 'changes' must be an object")
    if not isinstance(manifest.get("transforms", []), list):
        raise TfcError(f"{path}: 'transforms' must be a list")
    return manifest


_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "longformer", "mpnet")  # positions start after padding_idx


def head_kind_problem(config) -> str | None:
    """tfc measures single-label classifiers: a regression or multi-label head would be scored by argmax, wrongly."""
    kind = getattr(config, "problem_type", None)
    is_classifier = any(a.endswith("ForSequenceClassification") for a in (getattr(config, "architectures", None) or ()))
    if kind in ("regression", "multi_label_classification") or (is_classifier and kind is None and config.num_labels == 1):
        return (f"its head is for {kind or 'regression (num_labels 1)'}; tfc measures single-label classification "
                "(accuracy of the argmax)")
    return None


def max_positions(config) -> int | None:
    """The longest sequence the model's position embeddings take (None when not recorded, e.g. some rotary models)."""
    n = next((getattr(config, k) for k in ("max_position_embeddings", "n_positions") if getattr(config, k, None)), None)
    if n is None:
        return None
    if config.model_type in _OFFSET_POSITIONS:
        n -= (getattr(config, "pad_token_id", None) or 1) + 1
    return int(n)


def model_info(spec: str, policy: LoadPolicy = LoadPolicy()) -> ModelInfo:
    from transformers import AutoConfig

    source = resolve_model(spec)
    local = Path(source).is_dir()
    try:
        config = AutoConfig.from_pretrained(source, **policy.config_kwargs())
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if local:  # the folder is there: its config.json is what is wrong
            raise UsageError(f"{Path(source) / 'config.json'}: cannot be read as a model config ({first})") from None
        if isinstance(err, OSError):
            raise HubUnavailable(f"cannot read the config of model '{spec}': there is no local folder of that name, "
                                 f"and as a hub id: {first}") from None
        raise TfcError(f"model '{spec}': {first}") from None
    architectures = tuple(config.architectures or ())
    get = lambda *names: next((getattr(config, n) for n in names if getattr(config, n, None) is not None), 0)  # noqa: E731
    return ModelInfo(
        source=source,
        model_type=config.model_type,
        architectures=architectures,
        num_layers=get("num_hidden_layers", "n_layer"),
        hidden_size=get("hidden_size", "n_embd"),
        num_heads=get("num_attention_heads", "n_head"),
        intermediate_size=get("intermediate_size", "hidden_dim", "n_inner"),  # hidden_dim: DistilBERT
        vocab_size=get("vocab_size"),
        num_labels=config.num_labels,
        manifest=read_manifest(source) if Path(source).is_dir() else None,
        max_positions=max_positions(config),
        head_problem=head_kind_problem(config),
        label_names=tuple(head_labels(config)) if any(a.endswith("ForSequenceClassification") for a in architectures) else (),
    )
