"""What one attention or FFN sublayer costs as a function of the groups or units it keeps: weights, or latency
measured on this machine with the runtime the model will run on (Kwon et al. 2022's lookup tables).

The latency table is measured on copies of the whole model, at the benchmark's batch size and sequence length: every
layer's attention at 0..G groups with the FFNs whole, then every FFN at 0..F units on a grid with the attention
whole. A sublayer's cost is the time over the time without it, divided by the layers. (Timing attention and FFN
each with the other removed over-predicted the speedup: their sum was 33 ms for a model measured at 25-30 ms, and
1.50x predicted came out 1.28x measured on MiniLM-L6.) `base`, what every layer's sublayers removed leaves
(embeddings, classifier, the calls between), is timed directly as a third point. Derived instead as the time without
attention plus the time without FFNs minus the whole, it summed three timings' noise: on MiniLM-L6 it came out
0.77 ms and -0.05 ms in two tables a minute apart where the model without either measured 0.39-0.51 ms, and one
table predicted 4.63x for a model measured at 3.70x (the direct base: 4.19x).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from .. import progress
from ..arch import Dims, Keep, family_for
from ..arch.surgery import resize
from ..bench import MachineLoad, bench_inputs, default_threads, disturbance, in_turns
from ..errors import TfcError

FFN_GRID_POINTS = 16  # FFN sizes measured per table (0 and 16 evenly spaced counts up to the full width)
# What a latency table can be measured on. openvino-int8 times each configuration as `quantize: {method: static-int8,
# backend: openvino}` deploys it (NNCF's QDQ graph on OpenVINO): at INT8 the matrix products shrink and what every
# layer costs regardless of its width weighs more, which a table measured in fp32 does not see.
LatencyRuntime = Literal["torch", "onnxruntime", "openvino", "openvino-int8"]


@dataclass(frozen=True)
class CostTable:
    unit: str  # "ms" or "weights"
    base: float  # what the model costs with every sublayer removed
    heads: dict[int, float]  # attention groups kept -> cost of one attention sublayer (0 groups: 0)
    ffn: dict[int, float]  # FFN units kept -> cost of one FFN sublayer (0 units: 0)
    protocol: dict = field(default_factory=dict)  # how a latency table was measured

    def total(self, groups: list[int], ffn: list[int]) -> float:
        return self.base + sum(self.heads[g] for g in groups) + sum(self.ffn[f] for f in ffn)

    def summary(self) -> dict:
        return {"unit": self.unit, "base": round(self.base, 4),
                "heads": {k: round(v, 4) for k, v in self.heads.items()},
                "ffn": {k: round(v, 4) for k, v in self.ffn.items()}, **self.protocol}


def uniform_layers(dims: Dims) -> tuple[int, int]:
    """The groups and FFN units every layer has; a table measured on one layer stands for all of them."""
    if len(set(dims.groups)) != 1 or len(set(dims.ffn)) != 1:
        raise TfcError("mask-search needs layers of equal size (this model was pruned unevenly before); prune the "
                       "original model instead")
    return dims.groups[0], dims.ffn[0]


def weight_table(dims: Dims) -> CostTable:
    """Costs in prunable weights: every count is a choice."""
    groups, units = uniform_layers(dims)
    per_group, per_unit = dims.hidden * dims.group_width, dims.hidden * dims.ffn_matrices
    return CostTable("weights", 0.0, {g: float(g * per_group) for g in range(groups + 1)},
                     {f: float(f * per_unit) for f in range(units + 1)})


def ffn_grid(units: int) -> list[int]:
    """Counts of FFN units measured (and allowed): 0, all, and evenly spaced counts between, multiples of 8 in a
    layer wide enough for that (matrix kernels work in blocks)."""
    if units <= FFN_GRID_POINTS:
        return list(range(units + 1))
    multiple = 8 if units >= 8 * FFN_GRID_POINTS else 1
    return sorted({0, units} | {round(units * i / FFN_GRID_POINTS / multiple) * multiple
                                for i in range(1, FFN_GRID_POINTS)})


def latency_table(model, timer: "Timer", stage: str = "prune") -> CostTable:
    """Measure the latency table of `model` (a classifier) with `timer`, for `stage`'s progress line."""
    dims = family_for(model).dims()
    groups, units = uniform_layers(dims)
    layers = dims.num_layers
    grid = ffn_grid(units)
    every_group, every_unit = (tuple(range(groups)),) * layers, (tuple(range(units)),) * layers
    reference = _Reference(timer, model)
    with progress.bar(f"{stage}: measuring a latency table on {timer.runtime}", groups + 2 + len(grid)) as advance, \
            MachineLoad() as load:
        heads = _sweep(model, reference, [Keep((tuple(range(g)),) * layers, every_unit, None)
                                          for g in range(groups, -1, -1)], advance)
        ffn = _sweep(model, reference, [Keep(every_group, (tuple(range(f)),) * layers, None)
                                        for f in reversed(grid)], advance)
        neither = _sweep(model, reference, [Keep(((),) * layers, ((),) * layers, None)], advance)
    reference_ms = float(np.median(reference.times))
    heads = {g: ratio * reference_ms for g, ratio in zip(range(groups, -1, -1), heads)}
    ffn = {f: ratio * reference_ms for f, ratio in zip(reversed(grid), ffn)}
    base = neither[0] * reference_ms
    full = (heads[groups] + ffn[units]) / 2  # measured twice, once per sweep
    batch_size, seq_len = timer.inputs["input_ids"].shape
    protocol = {"runtime": timer.runtime, "batch_size": int(batch_size), "seq_len": int(seq_len),
                "threads": timer.threads, "repeats": timer.repeats, "full_model_ms": round(full, 4),
                "no_attention_ms": round(heads[0], 4), "no_ffn_ms": round(ffn[0], 4),
                "no_sublayer_ms": round(base, 4)} | load.result
    warn_if_disturbed(protocol, f"the {stage} stage's latency table")
    protocol["measured_ms"] = {"heads": {k: round(v, 4) for k, v in heads.items()},
                               "ffn": {k: round(v, 4) for k, v in ffn.items()}}
    return CostTable("ms", base, _per_layer(heads, heads[0], layers), _per_layer(ffn, ffn[0], layers), protocol)


def warn_if_disturbed(protocol: dict, what: str) -> None:
    """Say so when other processes ran beside a stage's timing: a table measured while another benchmark shared
    the 2 cores of this machine read the whole model at 20-23 ms and a copy missing 96 of 1536 FFN units per layer at
    13 ms, where a quiet machine measures 15.3 and 14.3 ms; the projection built on it came out 25% short."""
    disturbed = disturbance(protocol)
    if disturbed:
        progress.info(f"  [yellow]warning[/]: {what} is unreliable: {disturbed}. Re-run on a quiet machine")


class _Reference:
    """The unpruned model, timed interleaved with every configuration: each configuration's time is taken as a
    ratio to it, so the machine's drift over the minute a table takes (clock, neighbours) cancels. Timed one after
    another instead, one table predicted 1.51x for a model then measured at 1.14x."""

    def __init__(self, timer: "Timer", model):
        self.timer, self.run, self.times = timer, timer.runner(model), []

    def ratio(self, model) -> float:
        times = self.timer.interleaved({"reference": self.run, "model": self.timer.runner(model)}, self.timer.repeats)
        self.times += times["reference"]
        return float(np.median(times["model"]) / np.median(times["reference"]))


def _sweep(model, reference: _Reference, keeps: list[Keep], advance) -> list[float]:
    """The latency of a copy of `model` cut to each Keep in turn, as a ratio to the unpruned model's; each Keep is
    within the one before, so one copy shrinks in place."""
    copy_ = copy.deepcopy(model).cpu().eval()
    family = family_for(copy_)
    ratios = []
    for keep in keeps:
        resize(family, keep)
        ratios.append(reference.ratio(copy_))
        advance()
    return ratios


def _per_layer(times: dict[int, float], without: float, layers: int) -> dict[int, float]:
    """One sublayer's cost at each count: the model's time over its time `without` that kind of sublayer, shared by
    its `layers` alike sublayers, fitted piecewise linearly (Kwon et al.'s fit: flat up to a threshold, then a
    non-negative slope). The raw points are too noisy to use as they are: one FFN step of 96 units measured 1.3 ms
    per layer on MiniLM-L6, the search bought that noise, and 1.50x predicted came out 1.23x measured."""
    counts = np.array(sorted(k for k in times if k), dtype=float)
    costs = np.array([(times[int(k)] - without) / layers for k in counts])
    best = None
    for i, threshold in enumerate(counts):
        flat = costs[: i + 1].mean()
        x, y = counts[i + 1:] - threshold, costs[i + 1:] - flat
        slope = max(0.0, float((x * y).sum() / (x * x).sum())) if len(x) else 0.0
        fitted = np.where(counts <= threshold, flat, flat + slope * (counts - threshold))
        error = float(((fitted - costs) ** 2).sum())
        if best is None or error < best[0]:
            best = (error, threshold, flat, slope)
    _, threshold, flat, slope = best
    flat = max(flat, 0.0)
    return {0: 0.0} | {int(k): flat + slope * max(0.0, k - threshold) for k in counts}


class Timer:
    """Latency (ms) of one forward pass on `inputs` (bench.bench_inputs: real texts padded to the bench's length, as
    the report times them), on torch or ONNX Runtime."""

    def __init__(self, runtime: str, inputs: dict[str, np.ndarray], threads: int, tokenizer, repeats: int = 40):
        self.runtime, self.threads, self.tokenizer, self.repeats = runtime, threads, tokenizer, repeats
        self.inputs = {k: torch.from_numpy(v) for k, v in inputs.items()}

    @classmethod
    def for_stage(cls, runtime: str, state, ctx) -> "Timer":
        """Timing a stage's model as the recipe's bench will: its batch size, sequence length and threads, on
        training texts (never the split the report is measured on)."""
        bench = ctx.recipe.bench
        texts = ctx.data.split("train")["text"]
        return cls(runtime, bench_inputs(state.tokenizer, texts, bench.batch_size, bench.seq_len),
                   bench.threads or default_threads(), state.tokenizer)

    def interleaved(self, runs: dict, rounds: int) -> dict[str, list[float]]:
        """Milliseconds per call of each runner (`rounds` timed calls each), after a warm-up, in alternating turns as
        `tfc bench` times them (bench.in_turns), so that a stage's target and the report's speedup are read alike.
        Beside the teacher on torch, the 4x CoFi model of MiniLM-L6 read 3.97-4.06x call by call, 4.19-4.27x alone
        and 3.97-4.60x in turns of 5-10 (AMD EPYC, 2 threads; scripts/explore_interleaving.py --pruned)."""
        torch.set_num_threads(self.threads)
        for run in runs.values():
            for _ in range(max(3, rounds // 4)):
                run()
        times = {name: [] for name in runs}
        for name, timed in in_turns(list(runs), rounds):
            start = time.perf_counter()
            runs[name]()
            if timed:
                times[name].append((time.perf_counter() - start) * 1000)
        return times

    def runner(self, model):
        if self.runtime == "torch":
            return self._torch(model)
        from ..onnx_export import export_onnx

        graph = export_onnx(model, self.tokenizer)
        return self._ort(model, graph) if self.runtime == "onnxruntime" else self._openvino(graph)

    def _torch(self, model):
        import inspect

        accepted = inspect.signature(model.forward).parameters
        inputs = {k: v for k, v in self.inputs.items() if k in accepted}

        def run():
            with torch.inference_mode():
                model(**inputs)
        return run

    def _ort(self, model, graph: bytes):
        from ..onnx_export import input_names
        from ..ort_session import ort_session

        session = ort_session(graph, self.threads)
        feed = {n: self.inputs[n].numpy() for n in input_names(self.tokenizer, model) if n in self.inputs}
        return lambda: session.run(None, feed)

    def _openvino(self, graph: bytes):
        from ..runners import OpenVinoRunner

        feed = {k: v.numpy() for k, v in self.inputs.items()}
        if self.runtime == "openvino-int8":
            from ..quant.nncf_int8 import nncf_quantize

            # Ranges from the timed batch itself: they change what the kernels compute, not how long they take.
            graph = nncf_quantize(graph, [feed])
        run = OpenVinoRunner(graph, self.threads)
        return lambda: run(feed)


def latency_runtime_missing(runtime: str) -> str | None:
    """What must be installed to measure a latency table on `runtime`, or None."""
    import importlib.util

    if runtime == "onnxruntime" and importlib.util.find_spec("onnxruntime") is None:
        return "latency_runtime onnxruntime: onnxruntime is not installed"
    if runtime.startswith("openvino"):
        from ..quant.nncf_int8 import missing

        absent = missing() if runtime == "openvino-int8" else (
            None if importlib.util.find_spec("openvino") else "openvino not installed (pip install 'tfc[openvino]')")
        return f"latency_runtime {runtime}: {absent}" if absent else None
    return None
