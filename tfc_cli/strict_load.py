"""Loading plain HF folders as strictly as tfc checkpoints: weights that do not fit the config are an error.

`from_pretrained` accepts a folder whose config.json says 3 layers while the weights hold 2 (the third layer is
randomly initialised) or 1 (the extra weights are dropped), and reports a hidden-size mismatch only as "look at the
above report". tfc asks transformers for its loading info and stops on any missing, unexpected or mis-shaped
tensor, naming the file and the tensors. The one exception is a new task head: when a head is created for
fine-tuning, its weights (and the pooler's, when the checkpoint has none) are new by design, and a different
head in the checkpoint (e.g. a masked-LM head) is left behind; tfc says so.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import progress
from .errors import TfcError


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def check_safetensors_readable(source: str) -> None:
    """Every safetensors file of a local folder opens, and every shard its index names exists: one message naming
    the file otherwise (safetensors' own errors name no file)."""
    from safetensors import safe_open

    folder = Path(source)
    if not folder.is_dir():
        return
    for path in weight_files(folder):
        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except Exception as err:  # SafetensorError, OSError, ...: a truncated, garbled or pickled file
            raise TfcError(f"{path}: cannot read weights ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    for index in folder.glob("*.safetensors.index.json"):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
            raise TfcError(f"{index}: not a safetensors index ({err})") from None
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise TfcError(f"{index} names shard(s) that are missing: {', '.join(missing)}")


def _file_of(source: str, key: str) -> str:
    """The weights file a tensor lives in (for messages)."""
    folder = Path(source)
    for index in folder.glob("*.safetensors.index.json"):
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        for name, shard in weight_map.items():
            if key.endswith(name) or name.endswith(key):
                return str(folder / shard)
    files = weight_files(folder)
    return str(files[0]) if len(files) == 1 else str(folder)


def _listing(keys) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def from_pretrained_strictly(auto_class, source: str, fresh_head: bool = False, **kwargs):
    """`auto_class.from_pretrained(source, **kwargs)`, refusing weights that do not match the config."""
    check_safetensors_readable(source)
    model, info = auto_class.from_pretrained(source, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    prefix = getattr(model, "base_model_prefix", "") + "."
    body = lambda key: key.startswith(prefix) and not key.startswith(prefix + "pooler.")  # noqa: E731
    missing, unexpected = set(info["missing_keys"]), set(info["unexpected_keys"])
    mismatched = sorted(info["mismatched_keys"], key=lambda m: m[0])
    problems = []
    if mismatched:
        problems.append("shape mismatch " + "; ".join(f"{k} {tuple(saved)} in the file vs {tuple(wanted)} from config.json"
                                                      for k, saved, wanted in mismatched[:3])
                        + (f" and {len(mismatched) - 3} more" if len(mismatched) > 3 else ""))
    bad_missing = {k for k in missing if body(k)} if fresh_head else missing
    if bad_missing:
        problems.append(f"missing {_listing(bad_missing)}")
    bad_unexpected = {k for k in unexpected if body(k)} if fresh_head else unexpected
    if bad_unexpected:
        problems.append(f"unexpected {_listing(bad_unexpected)}")
    if problems:
        where = _file_of(source, (mismatched[0][0] if mismatched else next(iter(bad_missing | bad_unexpected))))
        raise TfcError(f"{where} does not match {Path(source) / 'config.json'}: " + "; ".join(problems))
    if fresh_head and missing:
        progress.info(f"new classification head: {_listing(missing)} (not in the checkpoint) initialised from the seed")
    if fresh_head and unexpected:
        progress.info(f"left behind from the checkpoint (not part of a classifier): {_listing(unexpected)}")
    return model


def check_tokenizer_fits(tokenizer, config, source: str) -> None:
    """A tokenizer that produces ids beyond the model's embedding rows fails deep inside the forward pass (an
    IndexError, or on CUDA a device assert); say so at load instead."""
    vocab = getattr(config, "vocab_size", None)
    if vocab and len(tokenizer) > vocab:
        raise TfcError(f"{source}: the tokenizer has {len(tokenizer)} tokens but the model's embeddings hold {vocab} "
                       "(config.json vocab_size): ids beyond it cannot be embedded. The tokenizer files belong to "
                       "another model")


def align_pad_token(model, tokenizer, source: str) -> None:
    """Decoder-style classifiers (GPT-2, Llama) find each sequence's last token through config.pad_token_id, which
    their configs usually leave unset: batches of more than one then fail inside transformers. The padding token
    is the tokenizer's, so the config gets its id."""
    if getattr(model.config, "pad_token_id", None) is not None:
        return
    if tokenizer.pad_token_id is None:
        raise TfcError(f"{source}: the tokenizer has no padding token, so batches cannot be padded; add one "
                       "(pad_token in tokenizer_config.json)")
    model.config.pad_token_id = tokenizer.pad_token_id
