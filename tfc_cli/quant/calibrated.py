"""GPTQ and AWQ over a whole decoder, layer by layer: each layer's Linears are rounded on the inputs that the already
rounded layers before it give (as both papers do), and the codes are kept for the ONNX graph (quant/nbits_graph.py).

The model runs once to capture what the first layer receives; then each layer runs twice on the captured hidden
states (once to collect its Linears' input statistics, once, rounded, to make the next layer's inputs). Each layer is
called with the arguments the model gave it in that first run (position embeddings, mask), so no family-specific
forward code is needed, and the work is about three forward passes instead of one per layer.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import progress
from ..arch import family_for
from ..sparsify.calibrate import layer_linears
from .awq import awq_layer_, clip_and_round, scale_inputs_
from .gptq import gptq_
from .group_grid import GroupCodes, diagonal_blocks, input_blocks, scaled_blocks


ACTIVATION_SAMPLE = 4096  # tokens whose inputs AWQ scores the kernel's activation rounding on, per Linear


class _Captured(Exception):
    """Stops the first run once the first layer's inputs are captured."""


@torch.no_grad()
def _layer_calls(model: nn.Module, layers: list[nn.Module], batches: list[dict]) -> tuple[list, list[list]]:
    """Per batch, the hidden states the first layer received, and for every layer the other arguments it was called
    with (positional after the hidden states, keyword without them)."""
    hiddens: list[torch.Tensor] = []
    calls: list[list[tuple[tuple, dict]]] = []

    def capture(index: int):
        def hook(_module, args, kwargs):
            kwargs = dict(kwargs)
            hidden = args[0] if args else kwargs.pop("hidden_states")
            if index == 0:
                hiddens.append(hidden)
            calls[-1].append((args[1:], kwargs))
            if index == len(layers) - 1:
                raise _Captured
        return hook

    handles = [layer.register_forward_pre_hook(capture(i), with_kwargs=True) for i, layer in enumerate(layers)]
    try:
        for batch in batches:
            calls.append([])
            try:
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            except _Captured:
                pass
    finally:
        for handle in handles:
            handle.remove()
    return hiddens, calls


def _run_layer(layer: nn.Module, hidden: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    out = layer(hidden, *args, **kwargs)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def _input_statistics(layer: nn.Module, linears: dict[str, nn.Linear], hiddens: list, calls: list, masks: list,
                      sample_every: int | None = None, blocks_of: int | None = None
                      ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per Linear: the mean over real calibration tokens of x x^T (float32: float64 costs 3x more and changes no
    decision here), or with `blocks_of` only its diagonal blocks of that size (what AWQ reads), and with
    `sample_every`, every so many of those tokens' inputs (tokens, in)."""
    sums: dict[str, torch.Tensor] = {}
    samples: dict[str, list[torch.Tensor]] = {}
    counts = {"tokens": 0}
    state = {"mask": None}

    def collect(name: str):
        def hook(_module, args):
            x = args[0][state["mask"]].float()
            sums[name] = (input_blocks(x, blocks_of) if blocks_of else x.t() @ x) + sums.get(name, 0)
            if sample_every:
                samples.setdefault(name, []).append(x[::sample_every].clone())
        return hook

    handles = [linear.register_forward_pre_hook(collect(name)) for name, linear in linears.items()]
    try:
        for hidden, (args, kwargs), mask in zip(hiddens, calls, masks):
            state["mask"] = mask
            counts["tokens"] += int(mask.sum())
            _run_layer(layer, hidden, args, kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return ({name: s / max(counts["tokens"], 1) for name, s in sums.items()},
            {name: torch.cat(parts) for name, parts in samples.items()})


@torch.no_grad()
def _round_head(model, family, hiddens: list, masks: list, algorithm: str, bits: int, group_size: int,
                act_order: bool, sample_every: int | None = None) -> tuple[GroupCodes | None, bool]:
    """The LM head by the same algorithm, on what the final norm gives it (measured: on SmolLM2-135M the head,
    a fifth of the weights, rounded to nearest costs more perplexity than all the layers by GPTQ), and whether AWQ
    scaled its input into the final norm (int8 in groups of 128, SmolLM2-135M: +0.08% perplexity with, +0.38%
    without). A head tied to the embeddings is untied first, so that the table keeps its weights in torch; the graph
    then stores the table once, as the head's codes (quant/weight_only.share_tied_table)."""
    heads, norms = family.head_linears(), family.final_norms()
    if len(heads) != 1 or len(norms) != 1:
        return None, False
    head, norm = heads[0], getattr(*norms[0])
    if family.head_tied():
        head.weight = nn.Parameter(head.weight.detach().clone())
        model.config.tie_word_embeddings = False
    tokens, hessian, samples = 0, torch.zeros(head.in_features, head.in_features), []
    for hidden, mask in zip(hiddens, masks):
        x = norm(hidden)[mask].float()
        hessian += x.t() @ x
        tokens += len(x)
        samples += [x[::sample_every]] if sample_every else []
    hessian /= max(tokens, 1)
    if algorithm == "gptq":
        return gptq_(head.weight, hessian, bits, group_size, act_order), False
    blocks = diagonal_blocks(hessian, group_size)
    s = scale_inputs_([head], norm, blocks, bits, group_size, torch.cat(samples) if samples else None)
    codes = clip_and_round(head, blocks if s is None else scaled_blocks(blocks, s), bits, group_size, clip=True)
    codes.input_scale = s  # a table shared with the head divides its rows by it (weight_only.share_tied_table)
    return codes, s is not None


@torch.no_grad()
def calibrated_codes(model: nn.Module, batches: list[dict], algorithm: str, bits: int, group_size: int,
                     act_order: bool = False, integer_compute: bool = False) -> tuple[list[GroupCodes], dict]:
    """Round every attention and FFN Linear of `model` in place (`algorithm` gptq or awq); returns their codes and a
    record (tokens, and for AWQ the input groups that were scaled). `integer_compute`: the kernel will round the
    activations to int8 too, which AWQ's scale search at 8 bits then accounts for on a sample of the inputs."""
    model.eval()
    family = family_for(model)
    layers = family.layers()
    hiddens, calls = _layer_calls(model, layers, batches)
    masks = [batch["attention_mask"].bool() for batch in batches]
    tokens = int(sum(int(m.sum()) for m in masks))
    # the activation term at 8 bits only: at 4 the weights' rounding dominates, and with the term AWQ int4 measured
    # +13.8% perplexity on SmolLM2-135M against +12.8% without (awq.py)
    sample_every = -(-tokens // ACTIVATION_SAMPLE) if algorithm == "awq" and integer_compute and bits == 8 else None
    codes: list[GroupCodes] = []
    scaled: dict[str, int] = {}
    with progress.bar(f"quantize: {algorithm} int{bits}, layer by layer", len(layers)) as advance:
        for index, layer in enumerate(layers):
            layer_args = [per_batch[index] for per_batch in calls]
            linears = layer_linears(family, layer)
            statistics, inputs = _input_statistics(layer, linears, hiddens, layer_args, masks, sample_every,
                                                   group_size if algorithm == "awq" else None)
            if algorithm == "gptq":
                codes += [gptq_(linear.weight, statistics[name], bits, group_size, act_order)
                          for name, linear in linears.items()]
            else:
                norms = {part: getattr(*slots[0]) if slots else None
                         for part, slots in family.sublayer_norms(layer).items()} if family.pre_norm else {}
                layer_codes, groups = awq_layer_(linears, statistics, norms, bits, group_size, inputs or None)
                codes += list(layer_codes.values())
                for group in groups:
                    scaled[group] = scaled.get(group, 0) + 1
            hiddens = [_run_layer(layer, hidden, args, kwargs) for hidden, (args, kwargs) in zip(hiddens, layer_args)]
            advance()
    head, head_scaled = _round_head(model, family, hiddens, masks, algorithm, bits, group_size, act_order, sample_every)
    codes += [head] if head is not None else []
    record = {"calibration_tokens": tokens, "lm_head": algorithm if head else "rtn"}
    if algorithm == "awq":
        record["scaled_inputs"] = {group: f"{count} of {len(layers)} layers" for group, count in scaled.items()}
        record["scaled_inputs"] |= {"lm_head": "into the final norm"} if head_scaled else {}
        record["scale_search"] = (f"weight and int8 activation rounding (inputs of 1 in {sample_every} tokens)"
                                  if sample_every else "weight rounding")
    return codes, record
