"""One calling convention for every runtime: a batch of numpy token arrays in, numpy logits out."""
from __future__ import annotations

import inspect

import numpy as np
import torch

from .ort_session import ort_session


RUNTIMES = ("torch", "torch-compile", "onnxruntime")


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
        feeds = {k: np.ascontiguousarray(batch[k], dtype=np.int64) for k in self.input_names}
        return self.session.run(["logits"], feeds)[0]


def runner_for(state, threads: int | None = None):
    """The runner for a ModelState or a loaded Checkpoint (both have .model / .onnx / .config)."""
    from .hf_classes import is_causal_lm

    if is_causal_lm(state.config):
        from .lm.runners import lm_runner_for

        return lm_runner_for(state, threads)
    if state.onnx is not None:
        return OrtRunner(state.onnx, threads)
    return TorchRunner(state.model)


def runtimes_for(ckpt) -> list[str]:
    """Runtimes a checkpoint can be timed on: an ONNX model only on ONNX Runtime, a torch model on all three
    (a causal LM on torch and onnxruntime: torch.compile would recompile at every decode length)."""
    from .hf_classes import is_causal_lm

    if ckpt.onnx is not None:
        return ["onnxruntime"]
    from .transforms import has, transforms_of

    if has(transforms_of(getattr(ckpt, "manifest", None)), "quantize"):
        return ["torch"]  # tfc's INT8 layers (torch._int_mm) have no ONNX export and gain nothing from compiling here
    return ["torch", "onnxruntime"] if is_causal_lm(ckpt.config) else list(RUNTIMES)


def runner_on(ckpt, runtime: str, threads: int | None = None):
    """`ckpt` executed by `runtime`; a torch model is compiled, or exported (fp32) to ONNX Runtime, on demand."""
    from .errors import UsageError

    if runtime not in runtimes_for(ckpt):
        raise UsageError(f"{ckpt.folder} runs on {' or '.join(runtimes_for(ckpt))} only, not {runtime}")
    if ckpt.onnx is not None or runtime == "torch":
        return runner_for(ckpt, threads)
    from .hf_classes import is_causal_lm

    if is_causal_lm(ckpt.config) and runtime == "onnxruntime":
        from .lm.runners import OrtLmRunner
        from .onnx_export import export_decoder_onnx

        return OrtLmRunner(export_decoder_onnx(ckpt.model, ckpt.tokenizer), ckpt.config, threads)
    if runtime == "onnxruntime":
        from .onnx_export import export_onnx

        return OrtRunner(export_onnx(ckpt.model, ckpt.tokenizer), threads)
    return TorchRunner(ckpt.model, compile=runtime == "torch-compile")
