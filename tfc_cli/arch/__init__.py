"""Arch adapters: the only code that knows where a model family keeps its heads, FFN units and hidden dims.

A decoder family (Llama-style: pre-RMSNorm, gated FFN) adds an adapter class with the same methods
(`layers`, `dims`, `install_gates`, `remove_gates`, `fold`, `resize`) and registers its model types here.
"""
from __future__ import annotations

from ..errors import TfcError
from .base import Dims, GateSlot, Gates, Keep
from .bert import BertAdapter, slice_linear

ADAPTERS = {t: BertAdapter for t in BertAdapter.model_types}

__all__ = ["ADAPTERS", "Dims", "GateSlot", "Gates", "Keep", "adapter_for", "rebuild", "slice_linear"]


def adapter_for(model):
    model_type = model.config.model_type
    cls = ADAPTERS.get(model_type)
    if cls is None:
        raise TfcError(f"structured pruning does not know model type '{model_type}' (known: {', '.join(sorted(ADAPTERS))})")
    return cls(model)


def rebuild(model, structure: dict) -> None:
    """Give a freshly built model the pruned shapes recorded in tfc.json (weights are loaded afterwards)."""
    adapter = adapter_for(model)
    adapter.resize(Keep.first_n(structure))
