"""tfc's torch INT8 Linear: close to float, exact int8 storage, loads back into a float skeleton."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tfc_cli.quant.torch_int8 import Int8DynamicLinear, prepare_for_loading, quantize_linears


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


def test_quantize_then_load_into_fresh_model():
    torch.manual_seed(0)
    make = lambda: nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 3))  # noqa: E731
    model = make()
    names = quantize_linears(model)
    assert names == ["0", "2"]
    fresh = make()
    prepare_for_loading(fresh, names)
    fresh.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(4, 8)
    torch.testing.assert_close(fresh(x), model(x))


def test_loading_rejects_a_module_that_is_not_linear():
    model = nn.Sequential(nn.ReLU())
    with pytest.raises(KeyError, match="ReLU"):
        prepare_for_loading(model, ["0"])
