"""tfc's torch INT8 Linear: close to float, exact int8 storage, loads back into a float skeleton."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tfc_cli.quant.torch_int8 import Int8DynamicLinear, Int8Embedding, prepare_for_loading, quantize_modules


@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_tracks_float_linear(bias):
    torch.manual_seed(0)
    linear = nn.Linear(37, 29, bias=bias)
    x = torch.randn(3, 5, 37)
    q = Int8DynamicLinear.from_linear(linear)
    y, yq = linear(x), q(x)
    assert yq.shape == y.shape == (3, 5, 29)
    rel = (yq - y).norm() / y.norm()
    assert rel < 0.02, rel
    assert q.weight_int8.dtype == torch.int8 and q.weight_int8.abs().max() <= 127


def test_int8_weights_dequantize_to_the_original():
    torch.manual_seed(0)
    linear = nn.Linear(16, 8)
    q = Int8DynamicLinear.from_linear(linear)
    dequant = q.weight_int8.t().float() * q.weight_scale[:, None]
    step = q.weight_scale[:, None]
    assert torch.all((dequant - linear.weight).abs() <= step / 2 + 1e-7)


def test_int8_embedding_rows_within_half_a_step():
    torch.manual_seed(0)
    emb = nn.Embedding(99, 16, padding_idx=0)
    q = Int8Embedding.from_embedding(emb)
    ids = torch.tensor([[1, 5, 98], [0, 0, 7]])
    err = (q(ids) - emb(ids)).abs()
    assert err.shape == (2, 3, 16)
    assert torch.all(err <= q.weight_scale[ids].unsqueeze(-1) / 2 + 1e-7)
    assert torch.all(q(ids)[1, 0] == 0)  # the padding row stays zero


def test_quantize_then_load_into_fresh_model():
    torch.manual_seed(0)
    make = lambda: nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 3))  # noqa: E731
    model = make()
    names = quantize_modules(model)
    assert names == ["0", "1", "3"]
    assert isinstance(model[0], Int8Embedding) and isinstance(model[3], Int8DynamicLinear)
    fresh = make()
    prepare_for_loading(fresh, names)
    fresh.load_state_dict(model.state_dict(), strict=True)
    ids = torch.tensor([[1, 2, 3], [4, 5, 10]])
    torch.testing.assert_close(fresh(ids), model(ids))


def test_tied_embedding_and_head_stay_float():
    emb, head = nn.Embedding(11, 8), nn.Linear(8, 11, bias=False)
    head.weight = emb.weight  # as a decoder ties its LM head to its input embeddings
    model = nn.Sequential(emb, nn.Linear(8, 8), head)
    assert quantize_modules(model) == ["1"]
    assert isinstance(model[0], nn.Embedding) and isinstance(model[2], nn.Linear)


def test_loading_rejects_a_module_that_is_not_linear():
    model = nn.Sequential(nn.ReLU())
    with pytest.raises(KeyError, match="ReLU"):
        prepare_for_loading(model, ["0"])
