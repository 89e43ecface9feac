"""Causal LM runners, torch and ONNX Runtime, with one interface:

- `runner({"input_ids": [1, T]}) -> logits [1, T, V]`: a whole sequence, no cache (perplexity, checks);
- `runner.prefill(ids [1, T]) -> (last logits [V], cache)` and `runner.step(token, cache) -> (logits [V], cache)`:
  generation with a KV cache, as a deployed model decodes.

The ONNX graph is the single "decode" graph of onnx_export.export_decoder_onnx: past keys/values in, present
out; an empty past makes it a prefill. Batch is 1: perplexity and latency-per-user are measured per sequence.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import TfcError


class TorchLmRunner:
    runtime = "torch"

    def __init__(self, model):
        self.model = model.eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            ids = torch.from_numpy(np.ascontiguousarray(batch["input_ids"])).to(self.model.device)
            return self.model(input_ids=ids, use_cache=False).logits.float().cpu().numpy()

    def prefill(self, ids: np.ndarray):
        from transformers import DynamicCache

        return self._forward(torch.from_numpy(np.ascontiguousarray(ids)), DynamicCache(config=self.model.config))

    def step(self, token: int, cache):
        return self._forward(torch.tensor([[token]]), cache)

    def _forward(self, ids: torch.Tensor, cache):
        with torch.inference_mode():
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=True)
            return out.logits[0, -1].float().numpy(), out.past_key_values


class OrtLmRunner:
    runtime = "onnxruntime"

    def __init__(self, onnx_model: bytes | str, config, threads: int | None = None):
        from ..ort_session import ort_session

        self.session = ort_session(onnx_model, threads)
        inputs = self.session.get_inputs()
        if [i.name for i in inputs[:2]] != ["input_ids", "position_ids"]:
            raise TfcError(f"not a decoder graph with a KV cache (inputs {', '.join(i.name for i in inputs[:3])}, ...)")
        cache = [i for i in inputs[2:] if len(i.shape) == 4]  # each layer's past keys and values
        self.past_names = [i.name for i in cache]
        # Gemma 3's sliding-window layers also take their window as a scalar, which the graph only passes through
        self.constants = {i.name: np.array(getattr(config, "sliding_window", None) or 0, dtype=np.int64)
                          for i in inputs[2:] if len(i.shape) == 0}
        outputs = self.session.get_outputs()
        self.output_names = [outputs[0].name] + [o.name for o in outputs[1:] if len(o.shape) == 4]
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        # each layer's empty past: its own key/value heads where the graph fixes them (a pruned model's layers differ)
        self.empty = [np.zeros((1, i.shape[1] if isinstance(i.shape[1], int) else heads, 0,
                                i.shape[3] if isinstance(i.shape[3], int) else head_dim), dtype=np.float32)
                      for i in cache]

    def _run(self, ids: np.ndarray, past: list[np.ndarray]):
        start = past[0].shape[2] if past else 0
        feeds = {"input_ids": np.ascontiguousarray(ids, dtype=np.int64),
                 "position_ids": np.arange(start, start + ids.shape[1], dtype=np.int64)[None]}
        feeds |= dict(zip(self.past_names, past or self.empty)) | self.constants
        logits, *present = self.session.run(self.output_names, feeds)
        return logits, present

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        ids = batch["input_ids"]
        return np.concatenate([self._run(row[None], [])[0] for row in ids])  # the graph's batch is 1

    def prefill(self, ids: np.ndarray):
        logits, present = self._run(ids, [])
        return logits[0, -1], present

    def step(self, token: int, cache):
        logits, present = self._run(np.array([[token]]), cache)
        return logits[0, -1], present
