"""`sparsify`: masks are exactly the pattern asked (2:4 is 2 zeros in every 4), SparseGPT's update does better than
masking alone, Wanda weighs inputs, and a sparsified model saves as a plain HF folder with its zeros."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from tfc_cli.cli.app import app
from tfc_cli.sparsify.masks import global_masks, matrix_mask, n_m_mask, row_mask
from tfc_cli.sparsify.sparsegpt import sparsegpt_

runner = CliRunner()


def test_n_m_masks_zero_exactly_n_of_every_m_and_the_smallest():
    scores = torch.rand(6, 16, generator=torch.Generator().manual_seed(0))
    for n, m in ((2, 4), (4, 8)):
        mask = n_m_mask(scores, n, m)
        groups, kept = scores.reshape(6, -1, m), mask.reshape(6, -1, m)
        assert (kept.sum(-1) == m - n).all()
        lowest_kept = torch.where(kept, groups, torch.inf).amin(-1)
        assert (lowest_kept >= torch.where(kept, -torch.inf, groups).amax(-1)).all()


def test_unstructured_masks_remove_the_asked_share():
    g = torch.Generator().manual_seed(0)
    scores = [0.5 + torch.rand(8, 10, generator=g), torch.rand(4, 5, generator=g) * 0.1]
    assert int((~matrix_mask(scores[0], 0.3)).sum()) == 24
    assert ((~row_mask(scores[0], 0.5)).sum(1) == 5).all()
    masks = global_masks(scores, 0.2)  # 20 of 100 go, all from the second matrix, whose scores are all lower
    assert int((~masks[0]).sum()) == 0 and int((~masks[1]).sum()) == 20


@pytest.mark.parametrize("pattern", [None, (2, 4)])
def test_sparsegpt_reconstructs_better_than_masking(pattern):
    """Same sparsity, same calibration inputs: SparseGPT's output error is below that of zeroing the lowest
    |w| * ||x|| (Wanda) without an update, on inputs whose features are correlated (of low effective rank, as
    activations are): the update moves the removed weights' work onto the kept ones."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=g) @ torch.randn(8, 32, generator=g) + 0.1 * torch.randn(512, 32, generator=g)
    weight = torch.randn(16, 32, generator=g)
    hessian = x.t() @ x
    pruned = torch.nn.Parameter(weight.clone())
    mask = sparsegpt_(pruned, hessian, 0.5, pattern)
    assert torch.equal(mask, pruned.data != 0) and float((~mask).float().mean()) == pytest.approx(0.5, abs=0.01)
    if pattern:
        assert ((~mask).reshape(16, -1, 4).sum(-1) == 2).all()
    wanda_scores = weight.abs() * x.norm(dim=0)[None, :]
    wanda = weight * (n_m_mask(wanda_scores, *pattern) if pattern else row_mask(wanda_scores, 0.5))
    error = lambda w: float((x @ (w - weight).t()).norm())  # noqa: E731
    assert error(pruned.data) < 0.5 * error(wanda)


def _folder(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    from tests.conftest import make_tokenizer

    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=40, max_position_embeddings=64)
    config.id2label, config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    torch.manual_seed(0)
    folder = tmp_path / "bert"
    BertForSequenceClassification(config).save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_a_2_4_model_saves_plain_with_exactly_its_pattern(method, make_recipe, tmp_path):
    from transformers import AutoModelForSequenceClassification

    import tfc_cli

    recipe = make_recipe(f"""
      - {{type: sparsify, method: {method}, pattern: "2:4"{'' if method == 'magnitude' else ', calibration_samples: 16'}}}
    """, model=_folder(tmp_path))
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = recipe.parent / "out" / "tiny"
    summary = json.loads((out / "report.json").read_text())["stages"][0]["summary"]
    assert summary["sparsity"] == pytest.approx(0.5) and summary["zlib_ratio"] < 0.95
    assert all(v == pytest.approx(0.5) for layer in summary["sparsity_per_layer"] for v in layer.values())
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    for layer in plain.bert.encoder.layer:
        for linear in (layer.attention.self.query, layer.attention.output.dense, layer.intermediate.dense,
                       layer.output.dense):
            zeros = (linear.weight == 0).reshape(linear.out_features, -1, 4).sum(-1)
            assert (zeros == 2).all()
    ids = torch.tensor([[5, 17, 42, 9, 33]])
    assert torch.allclose(plain(input_ids=ids).logits, tfc_cli.load(out).model(input_ids=ids).logits, atol=1e-5)


@pytest.mark.parametrize("stage, message", [
    ("{type: sparsify, pattern: '2:4'}", "FFN width 37 is not a multiple of 4"),
    ("{type: sparsify, pattern: '4:2'}", "N must be between 1 and M - 1"),
    ("{type: sparsify, pattern: '2:4', sparsity: 0.7}", "'sparsity' does not apply"),
    ("{type: sparsify, method: magnitude, calibration_samples: 8}", "'calibration_samples' does not apply"),
    ("{type: sparsify, method: wanda, scope: global}", "'scope' does not apply"),
    ("{type: sparsify, method: wanda, epochs: 2}", "'epochs' does not apply to method wanda"),
    ("{type: sparsify, method: movement, pattern: '2:4'}", "an N:M pattern is for magnitude, wanda or sparsegpt"),
    ("{type: sparsify, method: gradual-magnitude, schedule_start: 0.5, schedule_end: 0.5}",
     "schedule_end 0.5 must come after schedule_start 0.5"),
])
def test_sparsify_recipe_errors(stage_error, stage, message):
    output = stage_error(stage)
    assert message in output.replace("\n", " "), output


def test_the_cubic_schedule_of_zhu_and_gupta():
    from tfc_cli.sparsify.gradual import cubic_sparsity

    at = lambda step: cubic_sparsity(step, 100, 0.8, 0.1, 0.7)  # noqa: E731
    assert at(0) == at(10) == 0.0 and at(70) == at(100) == 0.8
    assert at(40) == pytest.approx(0.8 * (1 - 0.5 ** 3))  # halfway through the schedule: 7/8 of the final share
    assert all(at(s) < at(s + 1) for s in range(10, 70))


@pytest.mark.parametrize("steps", [1, 2, 3, 20, 1000])
def test_the_last_mask_update_reaches_the_final_sparsity_within_the_run(steps):
    from tfc_cli.sparsify.gradual import GradualSparsity, cubic_sparsity

    schedule = GradualSparsity([], "gradual-magnitude", 0.5, "per-layer", steps, 0.1, 0.7, updates=20)
    last = schedule.update_steps[-1]
    assert last <= steps and cubic_sparsity(last, steps, 0.5, 0.1, 0.7) == 0.5
    assert len(schedule.update_steps) <= 20 and schedule.update_steps[0] >= 1


def _gradual(method, weight, scope="per-layer"):
    from tfc_cli.sparsify.gradual import GradualSparsity

    linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        linear.weight.copy_(weight)
    return linear, GradualSparsity([linear], method, 0.5, scope, total_steps=10, start=0.0, end=1.0, updates=2)


def test_movement_scores_are_minus_weight_times_the_gradient_of_the_masked_weight():
    """Sanh et al.'s straight-through score gradient dL/dS = dL/dW' * W, W' = W * mask, for the kept and the pruned
    weights alike; the weights themselves get the masked gradient."""
    g = torch.Generator().manual_seed(0)
    weight, x, target = torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g), torch.randn(5, 3, generator=g)
    linear, schedule = _gradual("movement", weight)
    mask = schedule.masks[0]
    mask.mask.copy_(torch.tensor([[1.0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 0]]))
    ((linear(x) - target) ** 2).sum().backward()
    masked = (weight * mask.mask).requires_grad_(True)
    ((x @ masked.t() - target) ** 2).sum().backward()  # dL/dW' by autograd on the masked weight itself
    assert torch.allclose(mask.pending, -masked.grad * weight, atol=1e-5)
    assert torch.allclose(linear.parametrizations.weight.original.grad, masked.grad * mask.mask, atol=1e-5)


def test_magnitude_keeps_pruned_weights_pruned_and_movement_lets_them_back():
    weight = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    for method in ("gradual-magnitude", "movement"):
        linear, schedule = _gradual(method, weight)
        mask = schedule.masks[0]
        mask.mask.copy_(torch.tensor([[0.0, 1, 1, 1]]))  # the largest weight was pruned earlier
        if method == "movement":
            mask.pending.copy_(torch.tensor([[5.0, 0.0, 1.0, 2.0]]))  # ... but it moved away from zero since
        schedule.update(0.5)
        expected = [[0.0, 1, 1, 0]] if method == "gradual-magnitude" else [[1.0, 0, 0, 1]]
        assert mask.mask.tolist() == expected, method
        schedule.finish()
        assert torch.equal(linear.weight, weight * torch.tensor(expected)) and not hasattr(linear, "parametrizations")


@pytest.mark.parametrize("method", ["gradual-magnitude", "movement"])
def test_a_gradually_sparsified_model_reaches_its_sparsity_and_saves_plain(method, make_recipe, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForSequenceClassification

    import tfc_cli

    recipe = make_recipe(f"""
      - {{type: sparsify, method: {method}, sparsity: 0.6, epochs: 2, batch_size: 32, learning_rate: 1.0e-3}}
    """, model=_folder(tmp_path))
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = recipe.parent / "out" / "tiny"
    summary = json.loads((out / "report.json").read_text())["stages"][0]["summary"]
    assert summary["best_epoch"] == 2  # the schedule ends at 0.7 of the steps: only the last epoch is at 0.6
    assert all(v == pytest.approx(0.6, abs=0.01) for layer in summary["sparsity_per_layer"] for v in layer.values())
    assert summary["mask_update_steps"][-1] == round(0.7 * 2 * 10)  # 320 examples / 32 = 10 steps per epoch
    with safe_open(out / "model.safetensors", "pt") as f:
        assert not [k for k in f.keys() if "parametrizations" in k]
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    ids = torch.tensor([[5, 17, 42, 9, 33]])
    assert torch.allclose(plain(input_ids=ids).logits, tfc_cli.load(out).model(input_ids=ids).logits, atol=1e-5)
