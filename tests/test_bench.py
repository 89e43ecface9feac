"""The latency protocol: interleaved timing, warm-up, percentiles; sizes read from the weights files."""
from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save_file

from tfc_cli.bench import Protocol, time_interleaved, weights_size


class Sleeper:
    def __init__(self, seconds):
        self.seconds, self.calls = seconds, []

    def __call__(self, batch):
        self.calls.append(time.perf_counter())
        time.sleep(self.seconds)


def test_interleaved_timing_measures_each_model():
    fast, slow = Sleeper(0.002), Sleeper(0.02)  # far apart: a loaded machine delays wake-ups by milliseconds
    stats = time_interleaved({"fast": fast, "slow": slow}, {}, Protocol(batch_size=4, warmup=2, repeats=12, threads=1))
    assert len(fast.calls) == len(slow.calls) == 2 + 3 + 12  # warm-up, one untimed call per turn, timed calls
    assert stats["fast"]["repeats"] == 12 and stats["slow"]["repeats"] == 12
    assert stats["fast"]["protocol"]["turn_calls"] == 5
    assert stats["slow"]["p50_ms"] > stats["fast"]["p50_ms"] * 2
    assert stats["fast"]["p50_ms"] >= 2.0 and stats["fast"]["p50_ms"] <= stats["fast"]["p95_ms"]
    assert stats["fast"]["throughput_per_s"] == pytest.approx(4 * 1000 / stats["fast"]["p50_ms"])
    # After the warm-up, the models take turns of TURN_CALLS (5) timed calls, each after one untimed call, in
    # alternating order; the last turn holds what is left (2).
    calls = sorted([("f", t) for t in fast.calls[2:]] + [("s", t) for t in slow.calls[2:]], key=lambda x: x[1])
    assert "".join(name for name, _ in calls) == "f" * 6 + "s" * 12 + "f" * 9 + "s" * 3


def test_protocol_defaults_to_physical_cores():
    assert Protocol().resolved().threads >= 1
    assert Protocol(threads=3).resolved().threads == 3


def test_weights_size_of_safetensors(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5, dtype=torch.int8)}, str(path))
    size = weights_size(path)
    assert size["params"] == 17 and size["bytes_on_disk"] == path.stat().st_size


def test_weights_size_of_onnx(tmp_path):
    w = numpy_helper.from_array(np.zeros((6, 7), dtype=np.float32), "w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7])], initializer=[w])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert weights_size(path)["params"] == 42


def test_a_report_says_how_its_models_were_interleaved():
    from tfc_cli.report import _interleaving

    assert _interleaving({"turn_calls": 5}) == "interleaved in turns of 5"
    assert _interleaving({}) == "interleaved call by call"  # reports written before turns
