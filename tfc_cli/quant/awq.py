"""AWQ (Lin et al. 2024): before rounding, scale each input channel of a Linear up by s (and the op that feeds it
down by s) so that the weights that meet large activations lose less to rounding; then clip each group's range
where that lowers the error.

The error of a rounded weight W' on calibration inputs X is ||X (W - W')^T||^2 = sum_rows (W - W') H (W - W')^T
with H = X^T X. Both searches score each group's rounding on its own inputs, H's diagonal blocks, and leave out the
terms between groups, so only those blocks are collected (group_grid.input_blocks): on Qwen2.5-0.5B the full H of
a down projection (4864 inputs) took 5.8 s a layer to collect and its scale search 11 s, the blocks 0.2 s and 2.6 s;
SmolLM2-135M int8 in groups of 128 came out -0.0% perplexity against +0.08% on the full H.
- scale: s = rms(x)^alpha, alpha on a grid of 20 in [0, 1) (alpha 0 is plain rounding, so the search never does
  worse on its own loss), for the Linears that share an input: q/k/v after the attention norm, gate/up after the
  FFN norm, down after up (gated FFN), o after v (when v's outputs are o's inputs, i.e. no grouped-query heads).
  The reference implementation scores each candidate on the whole block's output; tfc scores the sum of the
  Linears' output errors, which needs no family-specific forward pass.
- clip: per (row, group), the range shrunk by a ratio in 1.0 .. 0.55 (group_grid.best_clip). q and k are not
  clipped (as in the reference: their errors are amplified by the attention softmax).
A norm is divided by s only when that is exact for it: checked by running it on random inputs before and after.

tfc also scales the LM head's input into the final norm (quant/calibrated.py), which the reference leaves alone.

With integer compute, ORT's kernel also rounds each token's input to int8 in blocks of the group size (one symmetric
scale per block), and at int8 that is most of the loss (scripts/explore_int8_groups.py: SmolLM2-135M in groups of
128, +1.44% perplexity, weights alone +0.37%). Given a sample of the inputs, the scale search then adds that
rounding's expected output error, and also tries SmoothQuant's scales (max|x|^alpha / max|w|^(1 - alpha)), which
move activation outliers into the weights: the family that shrinks a block's largest input. Measured on
SmolLM2-135M, int8 in groups of 128, 10,307 held-out tokens of Hamlet (perplexity vs fp32): rounding to nearest
+1.3%, GPTQ +0.9%, AWQ on the weights' error +0.35% (+0.16% with the head scaled), with the activation term +0.38%
(+0.08% with the head scaled): the term pays on the head, not on the layers. At 4 bits, where the weights' rounding
dominates, the term cost perplexity (SmolLM2 int4 in groups of 32: +13.8% with it, +12.8% without; +12.6% before
the head was scaled), so quant/calibrated.py passes inputs at 8 bits only.
"""
from __future__ import annotations

import torch
from torch import nn

from .group_grid import GroupCodes, best_clip, blockwise_error, padded_groups, round_to_grid, scaled_blocks

SCALE_GRID = 20
SEARCH_ROWS = 16384
RESCORED = 4
UNCLIPPED = ("q", "k")
ACTIVATION_LEVELS = 127  # the integer kernel's activation grid: symmetric int8


def activation_rounding_error(magnitudes: torch.Tensor, s: torch.Tensor, column_energy: torch.Tensor,
                              group_size: int) -> torch.Tensor:
    """Expected output error, per token, of the kernel rounding the inputs x / s to int8 in blocks of `group_size`,
    from `magnitudes` = |x| (tokens, in): a block's step is its largest |input| / 127, its noise variance step^2 / 12
    per input, carried through weights scaled by s whose columns' squared norms (summed over output rows) are
    `column_energy`."""
    step_sq = (padded_groups(magnitudes / s, group_size).amax(-1) / ACTIVATION_LEVELS) ** 2 / 12  # (tokens, blocks)
    energy = padded_groups((column_energy * s ** 2)[None], group_size).sum(-1)  # (1, blocks)
    return (step_sq * energy).sum(-1).mean()


def _positive(values: torch.Tensor) -> torch.Tensor:
    """values with zeros replaced by the smallest positive one (channels never active scale like the least one)."""
    positive = values > 0
    return torch.where(positive, values, values[positive].min() if positive.any() else torch.ones_like(values))


def _candidate_scales(blocks: torch.Tensor, weights: list[torch.Tensor], inputs: torch.Tensor | None):
    """AWQ's rms(x)^alpha and, given inputs, SmoothQuant's max|x|^alpha / max|w|^(1 - alpha); alpha 0 of the first
    family is no scaling at all."""
    mean_squares = blocks.diagonal(dim1=-2, dim2=-1).reshape(-1)[:weights[0].shape[1]]
    rms = _positive(mean_squares.clamp(min=0).sqrt())
    families = [lambda a: rms.pow(a)]
    if inputs is not None:
        x_max = _positive(inputs.abs().amax(0))
        w_max = _positive(torch.stack([w.abs().amax(0) for w in weights]).amax(0))
        families.append(lambda a: x_max.pow(a) / w_max.pow(1 - a))
    for family in families:
        for step in range(SCALE_GRID):
            s = family(step / SCALE_GRID).clamp(min=1e-4)
            yield s / (s.max() * s.min()).sqrt()


def _weights_error(weights: list[torch.Tensor], s: torch.Tensor, blocks: torch.Tensor, bits: int,
                   group_size: int) -> torch.Tensor:
    return sum(blockwise_error(w - round_to_grid(w * s, bits, group_size).dequantized() / s, blocks).sum()
               for w in weights)


def _search_scale(linears: list[nn.Linear], blocks: torch.Tensor, bits: int, group_size: int,
                  inputs: torch.Tensor | None = None) -> torch.Tensor:
    """The input scale with the least output error over `linears` (which share their input): the weights' rounding
    error on the inputs' `blocks` (group_grid.input_blocks), plus, given a sample of the `inputs` (tokens, in),
    their rounding to int8 by the kernel. Weights of more than SEARCH_ROWS rows (an LM head) rank the candidates on
    that many evenly spaced rows, their error scaled to all rows, and the best RESCORED are scored again on every
    row: rounding Qwen2.5-0.5B's 151,936-row head 40 times took 200 s of its quantize stage."""
    full = [linear.weight.detach().float() for linear in linears]
    column_energy = sum(w.pow(2).sum(0) for w in full)
    step = max(-(-len(w) // SEARCH_ROWS) for w in full)
    sampled = [w[::step] for w in full]
    magnitudes = inputs.abs() if inputs is not None else None

    def error(weights: list[torch.Tensor], s: torch.Tensor, rows_scale: float) -> float:
        total = rows_scale * _weights_error(weights, s, blocks, bits, group_size)
        if inputs is not None:
            total = total + activation_rounding_error(magnitudes, s, column_energy, group_size)
        return float(total)

    rows_scale = sum(len(w) for w in full) / sum(len(w) for w in sampled)
    candidates = enumerate(_candidate_scales(blocks, full, inputs))
    ranked = sorted(((error(sampled, s, rows_scale), i, s) for i, s in candidates), key=lambda item: item[:2])
    if step == 1:
        return ranked[0][2]
    return min(ranked[:RESCORED], key=lambda item: (error(full, item[2], 1.0), item[1]))[2]


def _fold_into_norm(norm: nn.Module, s: torch.Tensor) -> bool:
    """norm's output divided by s, by dividing its affine parameters; False (and unchanged) when that is not exact
    for this kind of norm (e.g. a norm that multiplies by 1 + weight)."""
    params = [p for p in (getattr(norm, "weight", None), getattr(norm, "bias", None)) if p is not None]
    if not params or any(p.shape != s.shape for p in params):
        return False
    probe = torch.randn(4, s.numel(), generator=torch.Generator().manual_seed(0), dtype=params[0].dtype)
    with torch.no_grad():
        before = norm(probe)
        saved = [p.data.clone() for p in params]
        for p in params:
            p.data.div_(s.to(p.dtype))
        if torch.allclose(norm(probe), before / s, rtol=1e-4, atol=1e-5):
            return True
        for p, old in zip(params, saved):
            p.data.copy_(old)
    return False


def _fold_into_linear_rows(linear: nn.Linear, s: torch.Tensor) -> None:
    linear.weight.data.div_(s[:, None].to(linear.weight.dtype))
    if linear.bias is not None:
        linear.bias.data.div_(s.to(linear.bias.dtype))


def clip_and_round(linear: nn.Linear, blocks: torch.Tensor, bits: int, group_size: int, clip: bool) -> GroupCodes:
    w = linear.weight.data.float()
    codes = round_to_grid(w, bits, group_size, best_clip(w, blocks, bits, group_size) if clip else 1.0)
    linear.weight.data.copy_(codes.dequantized().to(linear.weight.dtype))
    return codes


@torch.no_grad()
def scale_inputs_(linears: list[nn.Linear], before: nn.Module, blocks: torch.Tensor, bits: int, group_size: int,
                  inputs: torch.Tensor | None = None) -> torch.Tensor | None:
    """Search the scale s of the input that `linears` share and fold it: their weights times s, the module `before`
    them (a norm, or the Linear whose outputs they read) divided by s. Returns s, or None (nothing changed) when
    `before` is a norm that cannot be divided exactly."""
    s = _search_scale(linears, blocks, bits, group_size, inputs)
    if isinstance(before, nn.Linear):
        _fold_into_linear_rows(before, s)
    elif not _fold_into_norm(before, s):
        return None
    for linear in linears:
        linear.weight.data.mul_(s[None, :].to(linear.weight.dtype))
    return s


@torch.no_grad()
def awq_layer_(linears: dict[str, nn.Linear], blocks: dict[str, torch.Tensor], norms: dict[str, nn.Module | None],
               bits: int, group_size: int, inputs: dict[str, torch.Tensor] | None = None
               ) -> tuple[dict[str, GroupCodes], list[str]]:
    """Scale, clip and round one layer's Linears in place (linears by role: q k v o up gate down; blocks: the
    diagonal blocks of their inputs' x^T x before scaling; norms: the "mha" and "ffn" norms that feed q/k/v and
    gate/up, or None; inputs: samples of the Linears' inputs when the kernel rounds activations to int8). Returns
    the codes by role and the input groups that were scaled."""
    blocks = {name: b.float() for name, b in blocks.items()}
    inputs = dict(inputs) if inputs is not None else None
    groups = []
    if all(n in linears for n in "qkv"):
        groups.append((("q", "k", "v"), norms.get("mha")))
    if "up" in linears:
        groups.append((("up", "gate") if "gate" in linears else ("up",), norms.get("ffn")))
    if "gate" in linears and "down" in linears:
        groups.append((("down",), linears["up"]))
    if "v" in linears and "o" in linears and linears["v"].out_features == linears["o"].in_features:
        groups.append((("o",), linears["v"]))
    scaled = []
    for names, before in groups:
        if before is None:
            continue
        s = scale_inputs_([linears[n] for n in names], before, blocks[names[0]], bits, group_size,
                          inputs[names[0]] if inputs is not None else None)
        if s is None:
            continue
        for n in names:
            blocks[n] = scaled_blocks(blocks[n], s)  # the inputs are now x / s
            if inputs is not None:
                inputs[n] = inputs[n] / s
        scaled.append("/".join(names))
    codes = {name: clip_and_round(linear, blocks[name], bits, group_size, name not in UNCLIPPED)
             for name, linear in linears.items()}
    return codes, scaled
