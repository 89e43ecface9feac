"""A saved ONNX graph called like the transformers model it was exported from: `model(**inputs).logits`, and for a
causal LM `model.generate(input_ids, max_new_tokens=...)` (greedy, with the KV cache)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class OnnxOutput:
    logits: Any  # a torch tensor when the inputs were, else numpy


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


class OnnxModel:
    """The graph at `path` on `runtime` (onnxruntime, or openvino for a graph quantized for it)."""

    def __init__(self, path: str, config, runtime: str = "onnxruntime", threads: int | None = None):
        self.path, self.config, self.runtime, self.threads = path, config, runtime, threads
        self._runner = None

    @property
    def onnx(self) -> str:  # what the runtimes read a graph from (runtimes.py)
        return self.path

    @property
    def runner(self):
        """The runtime's session, opened on first use (loading a folder only to read its config stays cheap)."""
        if self._runner is None:
            from .runtimes import runner_for

            self._runner = runner_for(self, self.threads)
        return self._runner

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, **_ignored) -> OnnxOutput:
        batch = {k: _numpy(v) for k, v in (("input_ids", input_ids), ("attention_mask", attention_mask),
                                            ("token_type_ids", token_type_ids)) if v is not None}
        logits = self.runner(batch)
        if hasattr(input_ids, "detach"):
            import torch

            return OnnxOutput(torch.from_numpy(logits))
        return OnnxOutput(logits)

    def generate(self, input_ids, max_new_tokens: int = 32, eos_token_id: int | None = None) -> np.ndarray:
        """Greedy decoding of one sequence [1, T] -> [1, T + new]."""
        from .predict import greedy

        ids = _numpy(input_ids)
        new = greedy(self.runner, ids, max_new_tokens, eos_token_id)
        return np.concatenate([ids, np.array([new], dtype=ids.dtype)], axis=1)

    def __repr__(self) -> str:
        return f"OnnxModel({self.path!r})"
