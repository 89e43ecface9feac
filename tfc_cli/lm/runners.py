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
    """How a decode step runs (scripts/bench_decode_runtime.py measures each setting; docs/BENCHMARKS.md):
    - `shared_kv` (on where the graph allows it, lm/shared_kv.py): each layer's keys and values live in one
      buffer per layer that GroupQueryAttention extends in place, bound once; a step binds three small inputs.
      Off, each step passes every past as numpy arrays and copies every present back out. Measured 1.13x decode
      tokens/s on SmolLM2-135M int4, 2 threads.
    - `spin_within_run` (on): ORT's worker threads busy-wait between the ~480 operators of a step instead of
      sleeping and being woken for each: 1.10x alone, 1.17x with the cache in place (0.72x on a machine busy
      with other work).
    """
    runtime = "onnxruntime"
    INITIAL_CAPACITY = 256  # positions in the first shared buffers; they double when a sequence passes them

    def __init__(self, onnx_model, config, threads: int | None = None, shared_kv: bool = True,
                 spin_within_run: bool = True):
        import onnx

        from ..ort_session import ort_session
        from .shared_kv import shared_kv_graph

        # a ModelProto (export_decoder_onnx's form past 2 GiB) is taken as it is, and rewritten for the shared cache
        model = onnx_model if isinstance(onnx_model, onnx.ModelProto) else (
            onnx.load_from_string(onnx_model) if isinstance(onnx_model, bytes) else onnx.load(onnx_model))
        inputs = {i.name: _dims(i) for i in model.graph.input}
        names = list(inputs)
        if names[:2] != ["input_ids", "position_ids"]:
            raise TfcError(f"not a decoder graph with a KV cache (inputs {', '.join(names[:3])}, ...)")
        self.past_names = [n for n in names[2:] if len(inputs[n]) == 4]  # each layer's past keys and values
        # Gemma 3's sliding-window layers also take their window as a scalar, which the graph only passes through
        self.constants = {n: np.array(getattr(config, "sliding_window", None) or 0, dtype=np.int64)
                          for n in names[2:] if len(inputs[n]) == 0}
        outputs = {o.name: _dims(o) for o in model.graph.output}
        self.output_names = [next(iter(outputs))] + [n for n in list(outputs)[1:] if len(outputs[n]) == 4]
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        # each layer's own key/value heads where the graph fixes them (a pruned model's layers differ)
        self.kv_shapes = [(inputs[n][1] or heads, inputs[n][3] or head_dim) for n in self.past_names]
        self.shared_kv = shared_kv and shared_kv_graph(model, self.past_names, self.output_names[1:]) is not None
        # unchanged bytes or path go to ORT as given: serializing the parsed graph again would copy every weight
        self.session = ort_session(model if self.shared_kv else onnx_model, threads, spin_within_run)
        del model
        self._buffers: list[np.ndarray] = []
        self._binding = None
        self._latest = None  # the cache a shared-buffer step may continue from

    def _feeds(self, ids: np.ndarray, start: int) -> dict[str, np.ndarray]:
        return {"input_ids": np.ascontiguousarray(ids, dtype=np.int64),
                "position_ids": np.arange(start, start + ids.shape[1], dtype=np.int64)[None]} | self.constants

    def _run(self, ids: np.ndarray, cache: "OrtCache | None"):
        """Logits [1, T, V] and the cache after `ids`."""
        start = cache.length if cache else 0
        if self.shared_kv:
            return self._run_shared(ids, start, cache)
        past = cache.values if cache else [np.zeros((1, h, 0, d), dtype=np.float32) for h, d in self.kv_shapes]
        logits, *present = self.session.run(self.output_names, self._feeds(ids, start) | dict(zip(self.past_names, past)))
        return logits, OrtCache(present, start + ids.shape[1])

    def _run_shared(self, ids: np.ndarray, start: int, cache: "OrtCache | None"):
        if cache is not None and cache is not self._latest:
            raise TfcError("this runner keeps one KV cache in place: continue from the latest cache it returned")
        end = start + ids.shape[1]
        if not self._buffers or end > self._buffers[0].shape[2]:
            self._grow(end, start)
        binding = self._binding
        for name, value in self._feeds(ids, start).items():
            binding.bind_cpu_input(name, value)
        binding.bind_cpu_input("past_sequence_length", np.array([start], dtype=np.int64))
        binding.bind_output(self.output_names[0], "cpu")  # anew: the last step's logits had another length
        self.session.run_with_iobinding(binding)
        self._latest = OrtCache(self._buffers, end)
        return binding.get_outputs()[0].numpy(), self._latest

    def _grow(self, needed: int, keep: int) -> None:
        """Buffers for at least `needed` positions (doubling), the first `keep` copied over, bound as each layer's
        past and present alike (the same memory: GroupQueryAttention then writes into it in place)."""
        import onnxruntime as ort

        capacity = max(self.INITIAL_CAPACITY, needed, 2 * (self._buffers[0].shape[2] if self._buffers else 0))
        grown = [np.zeros((1, h, capacity, d), dtype=np.float32) for h, d in self.kv_shapes]
        for new, old in zip(grown, self._buffers):
            new[:, :, :keep] = old[:, :, :keep]
        self._buffers = grown
        self._binding = binding = self.session.io_binding()
        binding.bind_output(self.output_names[0], "cpu")  # first: get_outputs() lists in binding order
        for past, present, buffer in zip(self.past_names, self.output_names[1:], grown):
            value = ort.OrtValue.ortvalue_from_numpy(buffer)  # shares the numpy array's memory
            binding.bind_ortvalue_input(past, value)
            binding.bind_ortvalue_output(present, value)

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        ids = batch["input_ids"]
        return np.concatenate([self._run(row[None], None)[0] for row in ids])  # the graph's batch is 1

    def prefill(self, ids: np.ndarray):
        logits, cache = self._run(ids, None)
        return logits[0, -1], cache

    def step(self, token: int, cache: "OrtCache"):
        logits, cache = self._run(np.array([[token]]), cache)
        return logits[0, -1], cache


class OrtCache:
    """Each layer's keys and values after `length` tokens (arrays of exactly that length, or a runner's shared
    buffers, which are longer)."""

    def __init__(self, values: list, length: int):
        self.values, self.length = values, length


def _dims(value_info) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]
