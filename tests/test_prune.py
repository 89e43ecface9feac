"""`prune`: the criteria score what they claim, the selection removes what the target asks, recipe errors."""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from tfc_cli.arch import Dims, family_for
from tfc_cli.cli.app import app
from tfc_cli.prune.scores import Scores, scores
from tfc_cli.prune.select import select_layers, select_units

from tests.tiny_families import tiny_batch, tiny_model

runner = CliRunner()


def _loss(model, batch):
    ids = batch["input_ids"]
    return model(input_ids=ids, attention_mask=batch["attention_mask"], labels=ids).loss


def _batches(model_type: str, n: int = 4):
    batch = tiny_batch(model_type, batch=n, length=9)
    batch.setdefault("attention_mask", torch.ones_like(batch["input_ids"]))
    return [{k: v[i:i + 1] for k, v in batch.items()} for i in range(n)]


@pytest.mark.parametrize("criterion", ["taylor", "fisher", "activation"])
def test_a_unit_that_contributes_nothing_scores_zero(criterion):
    """FFN unit 4 of layer 1 has zero weights and attention group 2 of layer 0 writes nothing: removing them changes
    nothing, and every data criterion says so."""
    model = tiny_model("llama")
    family = family_for(model)
    with torch.no_grad():
        up, gate, down = family.ffn_linears(family.layers()[1])
        up.weight[4], gate.weight[4], down.weight[:, 4] = 0, 0, 0
        o = family.attention_linears(family.layers()[0])[3]
        o.weight[:, 2 * 12: 3 * 12] = 0  # group 2: query heads 4, 5 of head dim 6
    found = scores(model, family, criterion, _batches("llama"), _loss)
    assert float(found.ffn[1][4]) == pytest.approx(0, abs=1e-12)
    assert int((found.ffn[1] > 0).sum()) == 21  # every other unit does matter
    if criterion != "activation":  # its context vectors are not zero; what o makes of them is
        assert float(found.groups[0][2]) == pytest.approx(0, abs=1e-12) and int((found.groups[0] > 0).sum()) == 2


def test_block_influence_ranks_a_layer_that_changes_nothing_lowest():
    model = tiny_model("llama")
    family = family_for(model)
    middle = family.layers()[1]
    family.remove_attention(middle)
    family.remove_ffn(middle)  # the residual passes unchanged: cos(input, output) = 1
    found = scores(model, family, "activation", _batches("llama"), _loss)
    assert float(found.layers[1]) == pytest.approx(0, abs=1e-6) and float(found.layers.min()) == float(found.layers[1])
    dims = Dims(3, (3, 3, 3), 2, 6, (22, 22, 22), 3, 30)
    assert select_layers(dims, found, 0.3) == [0, 2]


def _dims() -> Dims:
    return Dims(2, (4, 4), 1, 8, (40, 40), 2, 32)  # a head owns 32 weights per hidden dim, an FFN unit 2


def _scores(dims: Dims, seed: int = 0) -> Scores:
    g = torch.Generator().manual_seed(seed)
    return Scores([torch.rand(n, generator=g) for n in dims.groups], [torch.rand(n, generator=g) for n in dims.ffn],
                  torch.rand(dims.hidden, generator=g), torch.rand(dims.num_layers, generator=g))


@pytest.mark.parametrize("criterion", ["magnitude", "fisher"])
def test_selection_removes_the_asked_share_and_the_lowest_units(criterion):
    dims = _dims()
    found = _scores(dims)
    keep = select_units(dims, found, {"heads", "ffn"}, 0.5, criterion)
    after = keep.dims(dims).prunable_params()
    assert abs(1 - after / dims.prunable_params() - 0.5) < 0.03
    if criterion == "magnitude":  # the same share in every layer, the top-scored of each
        assert [len(g) for g in keep.groups] == [2, 2] and [len(f) for f in keep.ffn] == [20, 20]
        assert keep.ffn[0] == tuple(sorted(found.ffn[0].topk(20).indices.tolist()))
    else:  # across layers by score per weight: every kept unit is worth at least any removed one of its kind
        for kind, per_layer, kept in (("ffn", found.ffn, keep.ffn), ("heads", found.groups, keep.groups)):
            kept_values = [float(s[u]) for s, k in zip(per_layer, kept) for u in k]
            gone = [float(s[u]) for s, k in zip(per_layer, kept) for u in range(len(s)) if u not in k]
            if kept_values and gone:
                assert min(kept_values) >= max(gone), kind


def test_hidden_and_units_share_the_removal():
    dims = _dims()
    keep = select_units(dims, _scores(dims), {"ffn", "hidden"}, 0.36, "magnitude")
    assert len(keep.hidden) == 26  # sqrt(1 - 0.36) = 0.8 of 32 hidden dims, rounded
    after = keep.dims(dims).prunable_params()
    assert abs(1 - after / dims.prunable_params() - 0.36) < 0.03


def test_a_target_beyond_what_the_granularity_holds_is_an_error():
    from tfc_cli.errors import TfcError

    dims = _dims()  # FFN units hold 160 of 416 weights per hidden dim
    with pytest.raises(TfcError, match="needs more than all of ffn"):
        select_units(dims, _scores(dims), {"ffn"}, 0.6, "fisher")


@pytest.mark.parametrize("stage, message", [
    ("{type: prune, granularity: [layers, heads]}", "use two prune stages"),
    ("{type: prune, granularity: layers, criterion: magnitude}", "cannot rank whole layers"),
    ("{type: prune, granularity: [heads, heads]}", "a list of distinct ones"),
    ("{type: prune, granularity: neurons}", "granularity must be heads, ffn, hidden"),
    ("{type: prune, criterion: wanda}", "'criterion' in stage 2 (prune) must be"),
    ("{type: prune, target_sparsity: 1.0}", "target_sparsity"),
    ("{type: prune, recover: {epoch: 1}}", "did you mean 'epochs'"),
])
def test_prune_recipe_errors(stage_error, stage, message):
    output = stage_error(stage)
    assert message in output, output


def test_a_second_prune_must_go_further(make_recipe):
    recipe = make_recipe("""
      - {type: prune, target_sparsity: 0.4, criterion: magnitude}
      - {type: prune, target_sparsity: 0.3, criterion: magnitude}
    """)
    result = runner.invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2 and "must be higher" in result.output, result.output

