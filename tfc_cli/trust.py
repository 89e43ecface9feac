"""What tfc will execute or unpickle when it loads a model: nothing, unless the recipe opts in.

Pickle weights (.bin, .pt, ...) can run arbitrary code when loaded, so tfc loads safetensors only; with
`allow_pickle_weights: true` they load through torch.load(weights_only=True). Remote code runs only with
`trust_remote_code: true` and a pinned `revision`, so the code that runs is the code that was reviewed.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import TfcError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
PINNED_REVISION = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass(frozen=True)
class LoadPolicy:
    allow_pickle_weights: bool = False
    trust_remote_code: bool = False
    revision: str | None = None

    def config_kwargs(self) -> dict:
        return {"trust_remote_code": self.trust_remote_code} | ({"revision": self.revision} if self.revision else {})

    def weights_kwargs(self) -> dict:
        # use_safetensors=True makes transformers refuse pickle files (hub ids included); weights_only=True is the
        # restricted unpickler for the opted-in case.
        return self.config_kwargs() | {"use_safetensors": None if self.allow_pickle_weights else True, "weights_only": True}

    def record(self) -> dict:
        return asdict(self)


def check_local_weights(source: str, policy: LoadPolicy) -> None:
    """Refuse a local model folder whose only weights are pickles, unless the policy allows them."""
    folder = Path(source)
    if policy.allow_pickle_weights or not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise TfcError(f"{folder} holds pickle weights ({', '.join(pickles)}), which can run code when loaded; tfc loads "
                       "safetensors only. Convert them, or opt in with `allow_pickle_weights: true` in the recipe "
                       "(or --allow-pickle-weights) to load them with torch.load(weights_only=True).")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")


def load_tokenizer(source: str, policy: LoadPolicy = LoadPolicy()):
    """The model's tokenizer. A local folder without tokenizer files is an error: transformers would otherwise
    build an empty-vocabulary tokenizer silently, and every word would become [UNK]."""
    from transformers import AutoTokenizer

    folder = Path(source)
    if folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise TfcError(f"{folder}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)})")
    try:
        return AutoTokenizer.from_pretrained(source, **policy.config_kwargs())
    except (OSError, ValueError) as err:
        raise TfcError(f"cannot load the tokenizer of {source}: {str(err).splitlines()[0]}") from None
