"""One calling convention for every runtime: a batch of numpy token arrays in, numpy logits out."""
from __future__ import annotations

import inspect
from pathlib import Path

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


class OpenVinoRunner:
    """An ONNX graph (bytes or a path) or an openvino.Model compiled by OpenVINO for the CPU, in f32 unless told
    otherwise: by default OpenVINO runs float layers in bf16 on CPUs with AMX or AVX-512 BF16, which changes the
    model's outputs without saying so."""
    runtime = "openvino"

    def __init__(self, model, threads: int | None = None, precision: str | None = "f32"):
        import tempfile

        import openvino as ov

        from .bench import default_threads

        core = ov.Core()
        if isinstance(model, bytes):
            with tempfile.TemporaryDirectory(prefix="tfc-openvino-") as tmp:  # read_model takes ONNX from a file
                path = f"{tmp}/model.onnx"
                with open(path, "wb") as f:
                    f.write(model)
                model = core.read_model(path)
        elif isinstance(model, (str, Path)):
            model = core.read_model(str(model))
        config = {"INFERENCE_NUM_THREADS": threads or default_threads(), "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in self.compiled.inputs]
        self.logits = next((o for o in self.compiled.outputs if "logits" in o.get_names()), self.compiled.outputs[0])

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        if "token_type_ids" in self.input_names and "token_type_ids" not in batch:  # as the torch model defaults them
            batch = batch | {"token_type_ids": np.zeros_like(batch["input_ids"])}
        outputs = self.request.infer({n: np.ascontiguousarray(batch[n], dtype=np.int64) for n in self.input_names})
        return np.array(outputs[self.logits])  # a copy: the request reuses its output buffer
