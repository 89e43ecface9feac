"""Gated == physically pruned on a real model: random gates (a third of the attention groups, half the FFN units,
every seventh hidden dim, and layer 4's whole attention) applied through hooks, then folded and removed; prints the
largest difference in the final hidden states (over the dims still alive) and the parameters before and after.

    python scripts/check_family_on_asset.py demo:mpnet-base     # or demo:minilm-l6, demo:smollm2-135m
"""
from __future__ import annotations

import sys

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from tfc_cli.arch import GateSlot, Gates, family_for
from tfc_cli.arch.gating import Gating
from tfc_cli.arch.surgery import fold, resize
from tfc_cli.hf_classes import is_causal_lm, quiet_transformers
from tfc_cli.model_info import model_info


def main(spec: str) -> None:
    quiet_transformers()
    info = model_info(spec)
    cls = AutoModelForCausalLM if info.is_causal_lm else AutoModelForSequenceClassification
    model = cls.from_pretrained(info.source, **({} if info.is_causal_lm else {"num_labels": 2})).eval()
    tokenizer = AutoTokenizer.from_pretrained(info.source)
    batch = tokenizer(["the film was a quiet triumph", "a dull, lifeless script that never finds its footing"],
                      padding=True, return_tensors="pt")
    if is_causal_lm(model.config):
        batch = {"input_ids": batch["input_ids"][:1]}
    family = family_for(model)
    dims = family.dims()
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.rand(*shape, generator=g) * 0.8 + 0.2  # noqa: E731
    heads, ffn, hidden = rand(dims.num_layers, dims.max_groups), rand(dims.num_layers, dims.max_ffn), rand(dims.hidden)
    heads[:, ::3], ffn[:, ::2], hidden[::7], heads[min(4, dims.num_layers - 1)] = 0, 0, 0, 0
    gates = Gates(heads=heads, ffn=ffn, hidden=hidden)
    params = sum(p.numel() for p in model.parameters())
    gating = Gating(family, GateSlot(gates))
    with torch.no_grad():
        gated = model.base_model(**batch).last_hidden_state
    gating.remove()
    resize(family, fold(family, gates))
    with torch.no_grad():
        pruned = model.base_model(**batch).last_hidden_state
    alive = hidden.nonzero().squeeze(-1)
    diff = float((gated[..., alive] - pruned).abs().max())
    print(f"{spec} ({type(family).__name__}): hidden states gated vs pruned max |diff| {diff:.2e} "
          f"(mean |h| {float(pruned.abs().mean()):.3f}); params {params / 1e6:.1f} M -> "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M; groups per layer {list(family.dims().groups)}; "
          f"hidden {dims.hidden} -> {family.dims().hidden}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo:mpnet-base")
