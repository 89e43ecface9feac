"""`prune` method mask-search: the search honours its budget and is optimal, rearrangement sees cancelling
gradients, least-squares tuning reproduces what a removed twin unit did, the latency table recovers known costs."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
from typer.testing import CliRunner

from tfc_cli.arch import Gates, family_for
from tfc_cli.arch.surgery import fold, resize
from tfc_cli.cli.app import app
from tfc_cli.prune import costs
from tfc_cli.prune.costs import CostTable, ffn_grid, weight_table
from tfc_cli.prune.search import keep_from_counts, rearrange, removal_losses, search_counts
from tfc_cli.prune.tune import tune_masks

from tests.tiny_families import tiny_batch, tiny_model

runner = CliRunner()


def _table() -> CostTable:
    # a fixed cost per sublayer (removing it saves more than its units' share) plus a cost per unit
    return CostTable("ms", 2.0, {0: 0.0, 1: 1.5, 2: 2.0, 3: 2.5}, {0: 0.0, 2: 1.0, 4: 1.6, 6: 2.2})


def _losses(table: CostTable, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    return [removal_losses(torch.randn(16, max(table.heads if i % 2 == 0 else table.ffn), generator=g)
                           * torch.rand(1, generator=g)) for i in range(6)]


def test_search_is_the_best_choice_within_the_budget():
    table = _table()
    losses = _losses(table)
    for whole, budget in itertools.product((True, False), (6.0, 9.0, 10.5, 12.5)):
        if not whole and budget < 9.5:
            continue  # keeping one of each costs 2 + 3 x (1.5 + 1.0)
        counts = search_counts(table, losses, budget, whole)
        assert table.total(counts[0::2], counts[1::2]) <= budget + 1e-9 and (whole or 0 not in counts)
        best = min(sum(losses[i][n] for i, n in enumerate(choice))
                   for choice in itertools.product(*[[k for k in (table.heads if i % 2 == 0 else table.ffn)
                                                      if k or whole] for i in range(6)])
                   if table.total(choice[0::2], choice[1::2]) <= budget)
        assert sum(losses[i][n] for i, n in enumerate(counts)) == pytest.approx(best, rel=1e-9)


def test_removal_losses_see_gradients_that_add_up():
    """Two units with equal Fisher information: removing both costs 4x one of them when their gradients agree, and
    nothing when they cancel; the diagonal estimate says 2x either way."""
    g = torch.randn(64, 1, generator=torch.Generator().manual_seed(0))
    agree, cancel = removal_losses(torch.cat([g, g], 1)), removal_losses(torch.cat([g, -g], 1))
    one = float(g.pow(2).mean())
    assert agree == pytest.approx([4 * one, one, 0]) and cancel == pytest.approx([0, one, 0])


def test_a_budget_below_what_no_unit_owns_is_an_error():
    from tfc_cli.errors import TfcError

    with pytest.raises(TfcError, match="embeddings, norms, head"):
        search_counts(_table(), _losses(_table())[:2], 1.5, whole=True)
    with pytest.raises(TfcError, match="remove_sublayers allows"):
        search_counts(_table(), _losses(_table())[:2], 3.0)


def test_each_sublayer_keeps_its_most_informative_units():
    fisher = [torch.tensor([0.1, 0.9, 0.5]), torch.tensor([0.3, 0.2, 0.8, 0.1])]
    assert keep_from_counts(fisher, [2, 1]) == [(1, 2), (2,)]


def test_rearrangement_removes_units_whose_gradients_cancel():
    """Units 0 and 1 have the largest gradients, but nearly opposite: removing both changes the loss by little,
    which the diagonal Fisher cannot see (it keeps unit 0) and the rearrangement does (it keeps unit 2)."""
    g = torch.Generator().manual_seed(0)
    big = torch.randn(32, generator=g) * 5
    gradients = torch.stack([1.1 * big, -big, torch.randn(32, generator=g)], dim=1)
    by_fisher = tuple(sorted(gradients.pow(2).sum(0).topk(1).indices.tolist()))
    assert by_fisher == (0,)
    assert rearrange(by_fisher, gradients) == (2,)


def _tiny_bert():
    model = tiny_model("bert")
    batch = tiny_batch("bert", batch=4, length=9)
    return model, [batch]


def test_tuning_makes_a_kept_twin_do_the_work_of_the_removed_one():
    """FFN unit 5 of every layer is a copy of unit 3: with 5 removed, scaling 3 by 2 reproduces the unpruned model
    exactly, and least squares finds that."""
    model, batches = _tiny_bert()
    family = family_for(model)
    with torch.no_grad():
        for layer in family.layers():
            up, _, down = family.ffn_linears(layer)
            up.weight[5], up.bias[5], down.weight[:, 5] = up.weight[3], up.bias[3], down.weight[:, 3]
    expected = model(**batches[0]).logits
    dims = family.dims()
    ffn = torch.ones(dims.num_layers, dims.max_ffn)
    ffn[:, 5] = 0
    gates, notes = tune_masks(model, family, Gates(heads=torch.ones(dims.num_layers, dims.max_groups), ffn=ffn),
                              batches)
    assert torch.allclose(gates.ffn[:, 3], torch.full((dims.num_layers,), 2.0), atol=1e-3)
    assert torch.allclose(gates.heads, torch.ones_like(gates.heads), atol=1e-3)  # nothing to make up for
    assert all(note["relative_error_after"] < 1e-3 for note in notes.values())
    resize(family, fold(family, gates))
    assert family.dims().ffn == (dims.max_ffn - 1,) * dims.num_layers
    assert torch.allclose(model(**batches[0]).logits, expected, atol=1e-4)


def test_tuning_lowers_the_error_of_a_real_pruning():
    model, batches = _tiny_bert()
    family = family_for(model)
    dims = family.dims()
    heads, ffn = torch.ones(dims.num_layers, dims.max_groups), torch.ones(dims.num_layers, dims.max_ffn)
    heads[:, 0], ffn[:, ::3] = 0, 0
    _, notes = tune_masks(model, family, Gates(heads=heads, ffn=ffn), batches)
    assert all(n["relative_error_after"] <= n["relative_error_before"] + 1e-6 for n in notes.values())
    assert any(n["relative_error_after"] < n["relative_error_before"] - 1e-3 for n in notes.values())


def test_the_latency_table_recovers_known_costs(monkeypatch):
    """With timings that are a known function of the model's sizes (1 ms + 0.5 ms per attention sublayer +
    0.1 ms per group + 0.01 ms per FFN unit), the table holds exactly those costs per sublayer."""
    model = tiny_model("bert")

    def fake_ms(self, m):
        dims = family_for(m).dims()
        return 1.0 + sum(0.5 + 0.1 * g for g in dims.groups if g) + sum(0.01 * f for f in dims.ffn)
    monkeypatch.setattr(costs.Timer, "runner", lambda self, m: lambda: fake_ms(self, m))
    monkeypatch.setattr(costs.Timer, "interleaved", lambda self, runs, rounds: {k: [run()] * rounds
                                                                                for k, run in runs.items()})
    timer = costs.Timer("torch", {k: v.numpy() for k, v in tiny_batch("bert").items()}, threads=1, tokenizer=None)
    table = costs.latency_table(model, timer)
    assert table.heads == pytest.approx({0: 0.0, 1: 0.6, 2: 0.7, 3: 0.8})
    assert table.ffn == pytest.approx({f: 0.01 * f for f in ffn_grid(22)})
    assert table.base == pytest.approx(1.0)
    assert table.total([3, 3, 3], [22, 22, 22]) == pytest.approx(fake_ms(None, model))
    assert table.protocol["other_processes_cpu_cores"] >= 0  # what else ran while the table was measured


def test_the_latency_tables_base_is_the_model_without_any_sublayer(monkeypatch):
    """A table's base is timed on the model with every sublayer removed, not derived from the sweeps' two ends: here
    the model without attention runs 0.3 ms slower than its sublayers add up to (as noise makes one timing on a real
    machine), which the derived base would carry into every pruned model's prediction."""
    model = tiny_model("bert")

    def fake_ms(self, m):
        dims = family_for(m).dims()
        without_attention = not any(dims.groups) and all(dims.ffn)
        whole = 1.0 + sum(0.5 + 0.1 * g for g in dims.groups if g) + sum(0.01 * f for f in dims.ffn)
        return whole + 0.3 * without_attention
    monkeypatch.setattr(costs.Timer, "runner", lambda self, m: lambda: fake_ms(self, m))
    monkeypatch.setattr(costs.Timer, "interleaved", lambda self, runs, rounds: {k: [run()] * rounds
                                                                                for k, run in runs.items()})
    timer = costs.Timer("torch", {k: v.numpy() for k, v in tiny_batch("bert").items()}, threads=1, tokenizer=None)
    table = costs.latency_table(model, timer)
    assert table.base == pytest.approx(1.0) == table.protocol["no_sublayer_ms"]
    assert table.protocol["no_attention_ms"] + table.protocol["no_ffn_ms"] - table.protocol["full_model_ms"] == \
        pytest.approx(1.3)  # what the base would have been, derived
    assert table.total([0, 0, 0], [0, 0, 0]) == pytest.approx(1.0)


def test_a_disturbed_stage_timing_says_so(monkeypatch):
    said = []
    monkeypatch.setattr(costs.progress, "info", said.append)
    costs.warn_if_disturbed({"other_processes_cpu_cores": 0.1, "threads": 2, "logical_cores": 2}, "the table")
    assert said == []
    costs.warn_if_disturbed({"other_processes_cpu_cores": 1.2, "threads": 2, "logical_cores": 2}, "the table")
    assert len(said) == 1 and "the table is unreliable: other processes used 1.20 CPU cores" in said[0]


def test_the_stage_timer_takes_turns_as_tfc_bench_does():
    """Each runner gets `rounds` timed calls, in turns of TURN_CALLS opened by an untimed call, the order of the
    runners alternating turn by turn (bench.in_turns): not call by call."""
    from tfc_cli.bench import TURN_CALLS

    timer = costs.Timer("torch", {k: v.numpy() for k, v in tiny_batch("bert").items()}, threads=1, tokenizer=None)
    calls = []
    rounds = 2 * TURN_CALLS
    times = timer.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds)
    assert {name: len(t) for name, t in times.items()} == {"a": rounds, "b": rounds}
    warm_up = 2 * max(3, rounds // 4)
    runs = [(name, len(list(group))) for name, group in itertools.groupby(calls[warm_up:])]
    turn = TURN_CALLS + 1
    assert runs == [("a", turn), ("b", 2 * turn), ("a", turn)]


def test_onnxruntime_timing_runs_the_exported_model():
    """The onnxruntime table times an exported copy: the model against itself is a ratio of about one."""
    from tests.conftest import make_tokenizer

    model = tiny_model("bert")
    inputs = {k: v.numpy() for k, v in tiny_batch("bert").items()}
    inputs["token_type_ids"] = 0 * inputs["input_ids"]  # what the tokenizer gives
    reference = costs._Reference(costs.Timer("onnxruntime", inputs,
                                             threads=1, tokenizer=make_tokenizer(), repeats=10), model)
    # the model against itself: about 1, and 0.45 once on a machine running two other jobs
    assert 0.25 < reference.ratio(model) < 4.0 and len(reference.times) == 10


@pytest.mark.parametrize("runtime", ["openvino", "openvino-int8"])
def test_openvino_timing_runs_the_exported_model_as_deployed(runtime, monkeypatch):
    """The openvino tables time the exported copy on OpenVINO; openvino-int8 times NNCF's QDQ graph of it, as the
    static-int8 openvino backend deploys it."""
    import onnx

    from tests.conftest import make_tokenizer
    from tfc_cli import runners

    compiled = []
    real = runners.OpenVinoRunner

    def spy(graph, threads=None):
        compiled.append({n.op_type for n in onnx.load_from_string(graph).graph.node})
        return real(graph, threads)
    monkeypatch.setattr(runners, "OpenVinoRunner", spy)
    model = tiny_model("bert")
    inputs = {k: v.numpy() for k, v in tiny_batch("bert").items()}
    inputs["token_type_ids"] = 0 * inputs["input_ids"]
    reference = costs._Reference(costs.Timer(runtime, inputs, threads=1, tokenizer=make_tokenizer(), repeats=10), model)
    # the model against itself: about 1, and 0.45 once on a machine running two other jobs
    assert 0.25 < reference.ratio(model) < 4.0 and len(reference.times) == 10
    assert len(compiled) == 2 and all(("QuantizeLinear" in ops) == (runtime == "openvino-int8") for ops in compiled)


def test_latency_runtimes_say_what_is_missing(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("nncf", "onnxruntime") else real(name, *a))
    assert costs.latency_runtime_missing("torch") is None and costs.latency_runtime_missing("openvino") is None
    assert "onnxruntime is not installed" in costs.latency_runtime_missing("onnxruntime")
    assert costs.latency_runtime_missing("openvino-int8") == ("latency_runtime openvino-int8: nncf not installed "
                                                              "(pip install 'tfc[openvino]')")


@pytest.mark.slow
def test_mask_search_on_onnxruntime(make_recipe):
    summary = _compress(make_recipe, "{type: prune, method: mask-search, target_speedup: 1.1, calibration_samples: 16, "
                                     "latency_runtime: onnxruntime, remove_sublayers: true}")
    assert summary["cost_table"]["runtime"] == "onnxruntime" and summary["predicted_speedup"] >= 1.1 - 1e-6


def test_weight_table_and_grid():
    model = tiny_model("bert")
    dims = family_for(model).dims()
    table = weight_table(dims)
    assert table.total(list(dims.groups), list(dims.ffn)) == dims.prunable_params()
    assert ffn_grid(1536) == [0, *range(96, 1536, 96), 1536] and ffn_grid(10) == list(range(11))


def _compress(make_recipe, stage: str) -> dict:
    recipe = make_recipe(f"""
      - type: finetune
        epochs: 1
        batch_size: 16
      - {stage}
    """)
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = recipe.parent / "out" / "tiny"
    return json.loads((out / "report.json").read_text())["stages"][1]["summary"]


@pytest.mark.slow  # about a minute of latency tables; the search itself runs in the contract rows by default
def test_mask_search_to_a_speedup_stays_within_its_measured_budget(make_recipe):
    summary = _compress(make_recipe, "{type: prune, method: mask-search, target_speedup: 1.1, calibration_samples: 16, "
                                     "remove_sublayers: true}")  # a tiny model is mostly fixed cost
    table = summary["cost_table"]
    assert table["unit"] == "ms" and table["runtime"] == "torch" and table["batch_size"] == 2
    assert summary["predicted_speedup"] >= 1.1 - 1e-6  # the search's budget, by the measured table
    assert summary["measured_speedup"]["pruned_ms"] > 0  # measured in the stage, reported beside the prediction


@pytest.mark.parametrize("stage, message", [
    ("{type: prune, target_speedup: 2.0}", "'target_speedup' does not apply to method rank"),
    ("{type: prune, method: mask-search, granularity: [heads, hidden]}", "removes heads and FFN units"),
    ("{type: prune, method: mask-search, criterion: taylor}", "'criterion' does not apply to method mask-search"),
    ("{type: prune, method: mask-search, target_sparsity: 0.3, target_speedup: 2.0}", "not both"),
    ("{type: prune, method: mask-search, latency_runtime: onnxruntime}", "'latency_runtime' does not apply"),
])
def test_mask_search_recipe_errors(stage_error, stage, message):
    output = stage_error(stage)
    assert message in output.replace("\n", " "), output


def test_a_speed_target_after_an_earlier_prune_is_validated(make_recipe):
    """A speedup target is not a sparsity: validating it after a prune must not compare the two."""
    recipe = make_recipe("""
      - {type: finetune, epochs: 1}
      - {type: prune, target_sparsity: 0.3, criterion: magnitude}
      - {type: prune, method: mask-search, target_speedup: 1.2}
    """)
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 0, result.output
