"""Runtimes as types: what each can execute, and how a model of each task runs on it (torch, torch.compile,
ONNX Runtime, and OpenVINO for classifiers' ONNX graphs when it is installed).

A task's *graphs* say how its model runs: the torch runner, the ONNX Runtime runner, and the one ONNX export
description for that task (a classifier: one graph, dynamic batch and sequence; a causal LM: one decoder graph with
its KV cache). Families need no export facts of their own: both exporters trace the transformers module, so a
pruned or ragged model exports as it is (tests/test_causal_lm.py, tests/test_stage_contract.py).

A *runtime* says which models it refuses and builds the runner. Adding a runtime is one class here; adding a task
is one TaskGraphs entry.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import TfcError, UsageError


@dataclass(frozen=True)
class TaskGraphs:
    torch_runner: Callable[[Any], Any]  # model -> runner
    ort_runner: Callable[[Any, Any, int | None], Any]  # (onnx, config, threads) -> runner
    export: Callable[[Any, Any], bytes]  # (model, tokenizer) -> ONNX bytes
    compiles: bool  # torch.compile helps: a causal LM would recompile at every decode length


def _classifier() -> TaskGraphs:
    from .onnx_export import export_onnx
    from .runners import OrtRunner, TorchRunner

    return TaskGraphs(TorchRunner, lambda onnx, config, threads: OrtRunner(onnx, threads), export_onnx, compiles=True)


def _causal_lm() -> TaskGraphs:
    from .lm.runners import OrtLmRunner, TorchLmRunner
    from .onnx_export import export_decoder_onnx

    return TaskGraphs(TorchLmRunner, OrtLmRunner, export_decoder_onnx, compiles=False)


def graphs_for(config) -> TaskGraphs:
    """The task graphs of a model, from its config's architecture (a ForCausalLM is a causal LM)."""
    from .hf_classes import is_causal_lm

    return _causal_lm() if is_causal_lm(config) else _classifier()


def _int8_layers(model) -> bool:
    """tfc's torch INT8 layers (torch._int_mm): no ONNX export, nothing to gain from compiling."""
    from .quant.torch_int8 import Int8DynamicLinear, Int8Embedding

    return model is not None and hasattr(model, "modules") and any(isinstance(m, (Int8DynamicLinear, Int8Embedding)) for m in model.modules())


class Runtime:
    name: ClassVar[str]

    def refuses(self, model, graphs: TaskGraphs) -> str | None:
        """Why this runtime cannot run `model` (a ModelState or Checkpoint), or None."""
        return None

    def runner(self, model, graphs: TaskGraphs, threads: int | None = None):
        raise NotImplementedError


class Torch(Runtime):
    name = "torch"

    def refuses(self, model, graphs):
        return "it is an ONNX graph" if model.onnx is not None else None

    def runner(self, model, graphs, threads=None):
        return graphs.torch_runner(model.model)


class TorchCompile(Runtime):
    name = "torch-compile"

    def refuses(self, model, graphs):
        if model.onnx is not None:
            return "it is an ONNX graph"
        if not graphs.compiles:
            return "a causal LM would recompile at every decode length"
        return "tfc's INT8 layers gain nothing from compiling" if _int8_layers(model.model) else None

    def runner(self, model, graphs, threads=None):
        from .runners import TorchRunner

        return TorchRunner(model.model, compile=True)


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def refuses(self, model, graphs):
        return "tfc's torch INT8 layers have no ONNX export" if model.onnx is None and _int8_layers(model.model) else None

    def runner(self, model, graphs, threads=None):
        onnx = model.onnx if model.onnx is not None else graphs.export(model.model, model.tokenizer)  # fp32, on demand
        return graphs.ort_runner(onnx, model.config, threads)


class OpenVino(Runtime):
    """The model's ONNX graph (the saved one, or the fp32 export) on OpenVINO's CPU plugin. On MiniLM-L6, tfc's
    static INT8 graph ran 1.28x faster here than on ONNX Runtime (docs/BENCHMARKS.md, "Peers on the encoder")."""
    name = "openvino"

    def refuses(self, model, graphs):
        import importlib.util

        if importlib.util.find_spec("openvino") is None:
            return "OpenVINO is not installed (pip install openvino)"
        from .hf_classes import is_causal_lm

        if is_causal_lm(model.config):  # the decoder's runner keeps its KV cache in ONNX Runtime's buffers
            return "a causal LM's decoder graph runs on onnxruntime"
        return "tfc's torch INT8 layers have no ONNX export" if model.onnx is None and _int8_layers(model.model) else None

    def runner(self, model, graphs, threads=None):
        from .runners import OpenVinoRunner

        return OpenVinoRunner(model.onnx if model.onnx is not None else graphs.export(model.model, model.tokenizer),
                              threads)


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (Torch(), TorchCompile(), OnnxRuntime(), OpenVino())}


def runner_for(model, threads: int | None = None):
    """The runner of a ModelState, loaded Checkpoint or OnnxModel on its own runtime (`model.runtime`: torch, ONNX
    Runtime, or OpenVINO for a graph quantized for it)."""
    native, graphs = RUNTIMES[model.runtime], graphs_for(model.config)
    reason = native.refuses(model, graphs)
    if reason:
        raise TfcError(f"this model runs on {native.name}, but {reason}")
    return native.runner(model, graphs, threads)


def runtimes_for(model) -> list[str]:
    """The runtimes a model can be timed on."""
    graphs = graphs_for(model.config)
    return [name for name, runtime in RUNTIMES.items() if runtime.refuses(model, graphs) is None]


def runner_on(model, runtime: str, threads: int | None = None):
    """`model` executed by `runtime`; a torch model is compiled, or exported (fp32) to ONNX Runtime, on demand."""
    graphs = graphs_for(model.config)
    reason = RUNTIMES[runtime].refuses(model, graphs)
    if reason:
        raise UsageError(f"{model.folder} runs on {' or '.join(runtimes_for(model))} only, not {runtime}: {reason}")
    return RUNTIMES[runtime].runner(model, graphs, threads)
