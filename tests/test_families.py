"""Every family: a gated forward pass equals the physically pruned model, whatever the gates remove."""
from __future__ import annotations

import pytest
import torch

from tfc_cli.arch import FAMILIES, GateSlot, Gates, family_for
from tfc_cli.errors import TfcError
from tfc_cli.arch.gating import Gating
from tfc_cli.arch.surgery import factorize_linear, fold, keep_layers, resize

from tests.tiny_families import CONFIGS, DECODERS, tiny_batch, tiny_model


def random_gates(dims, seed: int, drop_layers: bool = True) -> Gates:
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.rand(*shape, generator=g) * 0.8 + 0.2  # noqa: E731
    heads, ffn, hidden = rand(dims.num_layers, dims.max_groups), rand(dims.num_layers, dims.max_ffn), rand(dims.hidden)
    heads[1, 1] = 0
    ffn[1, ::3] = 0
    hidden[::4] = 0
    mha, ffn_layer = rand(dims.num_layers), rand(dims.num_layers)
    if drop_layers:
        mha[0] = 0  # layer 0 loses its attention (decoders: the KV cache must still count layer 0's tokens)
        ffn[2] = 0  # layer 2 loses every FFN unit
    return Gates(mha=mha, heads=heads, ffn_layer=ffn_layer, ffn=ffn, hidden=hidden)


def test_every_model_type_in_the_table_has_a_family():
    covered = {t for f in FAMILIES for t in f.model_types}
    assert set(CONFIGS) <= covered


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_gated_equals_pruned(model_type):
    model = tiny_model(model_type)
    batch = tiny_batch(model_type)
    family = family_for(model)
    dims = family.dims()
    assert dims.num_layers == 3 and dims.head_dim == 6
    if model_type in DECODERS:
        assert (dims.groups, dims.group_size, dims.ffn_matrices) == ((3,) * 3, 2, 3)
    gates = random_gates(dims, seed=0)
    slot = GateSlot(gates)
    gating = Gating(family, slot)
    with torch.no_grad():
        gated = model(**batch).logits
    gating.remove()
    keep = fold(family, gates)
    resize(family, keep)
    with torch.no_grad():
        pruned = model(**batch).logits
    torch.testing.assert_close(pruned, gated, atol=2e-5, rtol=1e-4)
    after = family.dims()
    assert after.groups[0] == 0 and after.groups[1] == 2 and after.ffn[2] == 0
    assert after.hidden == dims.hidden - len(range(0, dims.hidden, 4))
    assert after.prunable_params() == sum(p.numel() for layer in family.layers() for n, p in layer.named_parameters()
                                          if p.dim() == 2 and "norm" not in n.lower())


@pytest.mark.parametrize("model_type", DECODERS)
def test_pruned_decoder_generates_like_its_full_forward(model_type):
    """Decoding with the KV cache after layer 0's attention was removed equals the uncached forward."""
    model = tiny_model(model_type)
    family = family_for(model)
    gates = random_gates(family.dims(), seed=2)
    resize(family, fold(family, gates))
    ids = tiny_batch(model_type, batch=1)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False, use_cache=True)
        full = model(out).logits
    assert torch.equal(out[0, ids.shape[1]:], full[0, ids.shape[1] - 1:-1].argmax(-1))


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_pruning_twice_composes(model_type):
    """A pruned model is pruned again (ragged layers); its count follows, and the second result equals its gates."""
    model = tiny_model(model_type)
    family = family_for(model)
    resize(family, fold(family, random_gates(family.dims(), seed=3)))
    dims = family.dims()
    gates = random_gates(dims, seed=4, drop_layers=False)
    for name, rows in (("heads", dims.groups), ("ffn", dims.ffn)):  # units a layer no longer has stay closed
        tensor = getattr(gates, name)
        for i, n in enumerate(rows):
            tensor[i, n:] = 0
    batch = tiny_batch(model_type)
    slot = GateSlot(gates)
    gating = Gating(family, slot)
    with torch.no_grad():
        gated = model(**batch).logits
    gating.remove()
    resize(family, fold(family, gates))
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, gated, atol=2e-5, rtol=1e-4)
    assert family.dims().prunable_params() < dims.prunable_params()


@pytest.mark.parametrize("model_type, plain", [("llama", True), ("qwen2", True), ("gemma3_text", False),
                                               ("bert", False), ("distilbert", False)])
def test_uniform_pruning_loads_with_the_plain_classes_where_the_config_can_state_it(model_type, plain, tmp_path):
    """Every layer keeps the same groups and FFN units (and, here, fewer hidden dims): a Llama or Qwen2 config states
    all of it, so from_pretrained builds the pruned model; Gemma 3 scales embeddings by its config's hidden size and
    BERT derives the head dim from it, so those folders make the plain classes refuse."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    import tfc_cli
    from tfc_cli.checkpoint import save
    from tfc_cli.model_state import ModelState
    from tfc_cli.transforms import transform
    from tests.conftest import make_tokenizer

    model = tiny_model(model_type)
    model.config.architectures = [type(model).__name__]  # as a loaded model's config says
    family = family_for(model)
    dims = family.dims()
    gates = Gates(heads=torch.ones(dims.num_layers, dims.max_groups), ffn=torch.ones(dims.num_layers, dims.max_ffn),
                  hidden=torch.ones(dims.hidden))
    gates.heads[:, 0], gates.ffn[:, 1::2], gates.hidden[::5] = 0, 0, 0
    keep = fold(family, gates)
    resize(family, keep)
    state = ModelState(model=model, tokenizer=make_tokenizer(), config=model.config,
                       transforms=[transform("prune", method="test", **keep.record(dims))])
    folder = tmp_path / "out"
    folder.mkdir()
    save(state, folder, {"tfc_version": "test"})
    batch = tiny_batch(model_type)
    with torch.no_grad():
        expected = model(**batch).logits
        torch.testing.assert_close(tfc_cli.load(folder).model(**batch).logits, expected)
        cls = AutoModelForCausalLM if model_type in DECODERS else AutoModelForSequenceClassification
        if plain:
            torch.testing.assert_close(cls.from_pretrained(folder).eval()(**batch).logits, expected)
        else:
            with pytest.raises(OSError, match="no file named model.safetensors"):
                cls.from_pretrained(folder)


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_a_linear_replaced_by_two_keeps_the_output_at_full_rank_and_is_the_best_approximation_below(model_type):
    torch.manual_seed(0)
    model = tiny_model(model_type)
    batch = tiny_batch(model_type)
    with torch.no_grad():
        expected = model(**batch).logits
    family = family_for(model)
    layer = family.layers()[0]
    up = family.ffn_linears(layer)[0]
    full = min(up.weight.shape)
    x = torch.randn(5, up.in_features)
    with torch.no_grad():
        low = factorize_linear(up, full // 2)
        best = torch.linalg.svdvals(up.weight)[full // 2:].square().sum().sqrt()  # Eckart-Young: the tail's energy
        assert abs(torch.linalg.matrix_norm(low[1].weight @ low[0].weight - up.weight) - best) < 1e-4
        assert not torch.allclose(low(x), up(x), atol=1e-3)  # a real approximation, not a copy
    for linear in [*family.attention_linears(layer), *[m for m in family.ffn_linears(layer) if m is not None]]:
        parent_name, _, child = next(n for n, m in model.named_modules() if m is linear).rpartition(".")
        setattr(model.get_submodule(parent_name), child, factorize_linear(linear, min(linear.weight.shape)))
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, expected, atol=1e-4, rtol=1e-4)


def _layered(model_type: str):
    """A tiny model with 4 layers; Gemma 3's alternate sliding and full attention, so dropping a layer shifts them."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(0)
    kwargs = dict(CONFIGS[model_type])
    kwargs["n_layers" if model_type == "distilbert" else "num_hidden_layers"] = 4
    if model_type == "gemma3_text":
        kwargs["layer_types"] = ["sliding_attention", "full_attention"] * 2
    config = AutoConfig.for_model(model_type, **kwargs)
    if model_type in DECODERS:
        return AutoModelForCausalLM.from_config(config).eval()
    config.id2label, config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    return AutoModelForSequenceClassification.from_config(config).eval()


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_removing_whole_layers_equals_passing_them_by_and_reloads_with_the_plain_classes(model_type, tmp_path):
    """Layers 0 and 2 of 4 removed: the same logits as the full model with those layers' sublayers removed (the
    residual passes them by), a config that states the new depth, and a folder from_pretrained loads."""
    import copy

    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    import tfc_cli
    from tfc_cli.checkpoint import save
    from tfc_cli.model_state import ModelState
    from tfc_cli.transforms import transform
    from tests.conftest import make_tokenizer

    model = _layered(model_type)
    model.config.architectures = [type(model).__name__]
    bypassed = copy.deepcopy(model)
    family = family_for(bypassed)
    for i in (0, 2):
        layer = family.layers()[i]
        family.remove_attention(layer)
        family.remove_ffn(layer)
    keep_layers(family_for(model), [1, 3])
    batch = tiny_batch(model_type, length=12)  # longer than Gemma's sliding window of 8
    with torch.no_grad():
        expected = bypassed(**batch).logits
        torch.testing.assert_close(model(**batch).logits, expected, atol=2e-5, rtol=1e-4)
    assert model.config.num_hidden_layers == 2 and len(family_for(model).layers()) == 2
    if model_type == "gemma3_text":
        assert model.config.layer_types == ["full_attention", "full_attention"]
    state = ModelState(model=model, tokenizer=make_tokenizer(), config=model.config,
                       transforms=[transform("layers", kept=[1, 3], layers_before=4)])
    folder = tmp_path / "out"
    folder.mkdir()
    save(state, folder, {"tfc_version": "test"})
    cls = AutoModelForCausalLM if model_type in DECODERS else AutoModelForSequenceClassification
    with torch.no_grad():
        torch.testing.assert_close(tfc_cli.load(folder).model(**batch).logits, expected, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(cls.from_pretrained(folder).eval()(**batch).logits, expected, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", DECODERS)
def test_a_decoder_without_some_layers_generates_like_its_full_forward(model_type):
    """The kept layers' indices are renumbered: the KV cache of each is its own."""
    model = _layered(model_type)
    keep_layers(family_for(model), [0, 3])
    ids = tiny_batch(model_type, batch=1, length=10)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False, use_cache=True)
        full = model(out).logits
    assert torch.equal(out[0, ids.shape[1]:], full[0, ids.shape[1] - 1:-1].argmax(-1))


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_a_pruning_before_a_layer_removal_rebuilds_on_load(model_type, tmp_path):
    """Prune (ragged), then drop a layer: the earlier prune record still lists every original layer, and the load
    applies it to the layers that remain."""
    import tfc_cli
    from tfc_cli.checkpoint import save
    from tfc_cli.model_state import ModelState
    from tfc_cli.transforms import transform
    from tests.conftest import make_tokenizer

    model = tiny_model(model_type)
    model.config.architectures = [type(model).__name__]
    family = family_for(model)
    dims = family.dims()
    keep = fold(family, random_gates(dims, seed=5))
    resize(family, keep)
    keep_layers(family, [1, 2])
    state = ModelState(model=model, tokenizer=make_tokenizer(), config=model.config,
                       transforms=[transform("prune", method="test", **keep.record(dims)),
                                   transform("layers", kept=[1, 2], layers_before=3)])
    folder = tmp_path / "out"
    folder.mkdir()
    save(state, folder, {"tfc_version": "test"})
    batch = tiny_batch(model_type)
    with torch.no_grad():
        torch.testing.assert_close(tfc_cli.load(folder).model(**batch).logits, model(**batch).logits)


def test_layers_to_keep_must_be_increasing_and_in_range():
    family = family_for(tiny_model("bert"))
    for bad in ([], [2, 1], [0, 0], [3], [-1]):
        with pytest.raises(TfcError, match="increasing indices in 0..2"):
            keep_layers(family, bad)
