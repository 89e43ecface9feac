"""Model families and the family-neutral structured pruning built on their descriptions.

- family.py: what a family describes (attention, FFN, norms, embeddings, head); encoders.py and decoders.py
  hold the families; a new one is a subclass registered in FAMILIES.
- gating.py: gates over attention groups, FFN units, whole sublayers and hidden dims, applied through hooks.
- surgery.py: folding gate values into the weights and removing what they zeroed.
"""
from __future__ import annotations

from ..errors import TfcError
from .base import Dims, GateSlot, Gates, Keep
from .decoders import Gemma3, LlamaLike
from .encoders import BertLike, DistilBert, MPNet
from .family import Family

FAMILIES: tuple[type[Family], ...] = (BertLike, DistilBert, MPNet, LlamaLike, Gemma3)
BY_MODEL_TYPE = {t: f for f in FAMILIES for t in f.model_types}

__all__ = ["BY_MODEL_TYPE", "FAMILIES", "Dims", "Family", "GateSlot", "Gates", "Keep", "family_for", "known_types"]


def known_types() -> str:
    return ", ".join(sorted(BY_MODEL_TYPE))


def family_for(model) -> Family:
    model_type = model.config.model_type
    cls = BY_MODEL_TYPE.get(model_type)
    if cls is None:
        raise TfcError(f"structured pruning does not know model type '{model_type}' (known: {known_types()})")
    return cls(model)
