"""One calling convention for every runtime: a batch of numpy token arrays in, numpy logits out."""
from __future__ import annotations

import inspect

import numpy as np
import torch

from .ort_session import ort_session


class TorchRunner:
    def __init__(self, model: torch.nn.Module, compile: bool = False):  # noqa: A002
        model.eval()
        accepted = inspect.signature(model.forward).parameters
        self.input_names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]
        # torch.compile (inductor) specialises on the first shapes it sees; the benchmark's shapes are fixed
        self.model = torch.compile(model) if compile else model
        self.runtime = "torch-compile" if compile else "torch"

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            inputs = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in batch.items()
                      if k in self.input_names}
            return self.model(**inputs).logits.float().cpu().numpy()


class OrtRunner:
    runtime = "onnxruntime"

    def __init__(self, onnx_model: bytes | str, threads: int | None = None):
        self.session = ort_session(onnx_model, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        if "token_type_ids" in self.input_names and "token_type_ids" not in batch:  # as the torch model defaults them
            batch = batch | {"token_type_ids": np.zeros_like(batch["input_ids"])}
        feeds = {k: np.ascontiguousarray(batch[k], dtype=np.int64) for k in self.input_names}
        return self.session.run(["logits"], feeds)[0]
