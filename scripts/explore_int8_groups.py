"""Why int8 weight-only in groups of 128 loses more perplexity than groups of 32 on ONNX Runtime, simulated in torch.

ORT's integer MatMulNBits kernel (accuracy_level 4) also quantizes the activation to int8, in blocks of the weights'
group size along the input dimension. Every Linear of SmolLM2-135M (the head untied, so it is rounded like the
others) is fake-quantized: weights symmetric int8 per group, then optionally the activation per block of the same
size. Perplexity on 4,096 tokens of held-out Hamlet (windows of 512, stride 256). The two remedies tried:
SmoothQuant's scales (alpha 0.5, activation maxima from the first 8,192 training tokens, folded into the RMSNorm
weights and the FFN up rows) and ordering each Linear's input channels by their activation maximum, so outliers
share blocks (a bound on what one permutation of the residual stream, exact in float, could give).

    python scripts/explore_int8_groups.py
"""
from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_lm import split_text  # noqa: E402
from tfc_cli.model_info import resolve_model  # noqa: E402

WINDOW, STRIDE, TOKENS, CALIBRATION_TOKENS = 512, 256, 4096, 8192


def perplexity(model: nn.Module, ids: torch.Tensor) -> float:
    nll, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, ids.shape[1] - WINDOW + 1, STRIDE):
            x = ids[:, start:start + WINDOW]
            logp = torch.log_softmax(model(x).logits[:, :-1].float(), -1).gather(-1, x[:, 1:, None])[..., 0]
            scored = logp[:, 0 if start == 0 else WINDOW - STRIDE - 1:]
            nll, count = nll - scored.sum().item(), count + scored.numel()
    return math.exp(nll / count)


def blockwise_int8(x: torch.Tensor, group: int) -> torch.Tensor:
    """Symmetric int8 with one scale per `group` values of the last dimension (padded, as ORT pads K)."""
    k = x.shape[-1]
    padded = nn.functional.pad(x, (0, (-k) % group))
    blocks = padded.reshape(*x.shape[:-1], -1, group)
    scale = blocks.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127
    return (blocks / scale).round().clamp(-127, 127).mul(scale).reshape(padded.shape)[..., :k]


class FakeQuant:
    """Rounds each Linear's weight (and input, when `activations`) as the kernel would, in channel order `order`."""

    def __init__(self, linears: dict[str, nn.Linear]):
        self.linears, self.weights = linears, {n: m.weight.detach().clone() for n, m in linears.items()}
        self.setting: dict[nn.Linear, tuple] = {}
        for module in linears.values():
            module.register_forward_pre_hook(self.hook)

    def set(self, group: int, activations: bool, orders: dict[str, torch.Tensor] | None = None) -> None:
        for name, module in self.linears.items():
            order = (orders or {}).get(name)
            w = self.weights[name] if order is None else self.weights[name][:, order]
            w = blockwise_int8(w, group)
            module.weight.data = w if order is None else w[:, torch.argsort(order)]
            self.setting[module] = (group, activations, order)

    def hook(self, module, args):
        group, activations, order = self.setting.get(module, (0, False, None))
        if not activations:
            return None
        x = args[0] if order is None else args[0][..., order]
        x = blockwise_int8(x, group)
        return (x if order is None else x[..., torch.argsort(order)],) + args[1:]


def activation_maxima(model: nn.Module, linears: dict[str, nn.Linear], ids: torch.Tensor) -> dict[str, torch.Tensor]:
    maxima: dict[str, torch.Tensor] = {}

    def record(name):
        def hook(_module, args):
            m = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(0)
            maxima[name] = torch.maximum(maxima.get(name, m), m)
        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in linears.items()]
    with torch.inference_mode():
        for start in range(0, ids.shape[1], WINDOW):
            model(ids[:, start:start + WINDOW])
    for handle in handles:
        handle.remove()
    return maxima


def smooth(model: nn.Module, maxima: dict[str, torch.Tensor], alpha: float) -> None:
    """SmoothQuant's per-channel scales, folded exactly: into the RMSNorm before q/k/v and gate/up, and into the
    up rows before down."""
    with torch.no_grad():
        for i, layer in enumerate(model.model.layers):
            prefix = f"model.layers.{i}."
            attention, mlp = layer.self_attn, layer.mlp
            for key, linears, fold in (("self_attn.q_proj", [attention.q_proj, attention.k_proj, attention.v_proj],
                                        lambda s: layer.input_layernorm.weight.div_(s)),
                                       ("mlp.gate_proj", [mlp.gate_proj, mlp.up_proj],
                                        lambda s: layer.post_attention_layernorm.weight.div_(s)),
                                       ("mlp.down_proj", [mlp.down_proj], lambda s: mlp.up_proj.weight.div_(s[:, None]))):
                weight_max = torch.stack([m.weight.abs().amax(0) for m in linears]).amax(0).clamp(min=1e-5)
                scale = (maxima[prefix + key].clamp(min=1e-5) ** alpha / weight_max ** (1 - alpha)).clamp(min=1e-5)
                for m in linears:
                    m.weight.mul_(scale[None, :])
                fold(scale)


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    folder = resolve_model("demo:smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with tempfile.TemporaryDirectory() as tmp:
        split_text(Path(tmp), "demo:hamlet")
        test = tokenizer((Path(tmp) / "test.txt").read_text(), return_tensors="pt")["input_ids"][:, :TOKENS]
        train = tokenizer((Path(tmp) / "train.txt").read_text(), return_tensors="pt")["input_ids"][:, :CALIBRATION_TOKENS]

    def load():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())  # untied: rounded like a Linear
        return model, {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}

    model, linears = load()
    fp32 = perplexity(model, test)
    maxima = activation_maxima(model, linears, train)
    rows = [("fp32", fp32)]
    quant = FakeQuant(linears)
    for group in (32, 64, 128):
        for activations in (False, True):
            quant.set(group, activations)
            rows.append((f"groups of {group}, activations {'int8 in blocks of ' + str(group) if activations else 'float'}",
                         perplexity(model, test)))
    orders = {n: torch.argsort(m, descending=True) for n, m in maxima.items() if not n.endswith("o_proj")}
    quant.set(128, True, orders)
    rows.append(("groups of 128, activations int8, input channels ordered by activation maximum",
                 perplexity(model, test)))
    smoothed, smoothed_linears = load()
    smooth(smoothed, maxima, 0.5)
    FakeQuant(smoothed_linears).set(128, True)
    rows.append(("groups of 128, activations int8, SmoothQuant alpha 0.5", perplexity(smoothed, test)))
    print(f"\nSmolLM2-135M, {test.shape[1]} tokens of held-out Hamlet, every Linear fake-quantized\n")
    print("| setting | perplexity | vs fp32 |\n|---|---:|---:|")
    for label, value in rows:
        print(f"| {label} | {value:.2f} | {value / fp32 - 1:+.2%} |")


if __name__ == "__main__":
    main()
