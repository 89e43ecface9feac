"""The classifier's ONNX export with SDPA attention (as transformers loads it) vs eager attention (what tfc exports
since it measured this), and Optimum's export when given: fp32 logits compared on a padded batch, and batch-1
latency on ONNX Runtime, timed interleaved.

`--decoder`: the same for a causal LM's decoder graph (demo:smollm2-135m), each export quantized to int8 in groups
of 128 (round to nearest, the tied table shared): operators, logits, and decode tokens/s over `--rounds` runs of
tfc's generation protocol (64-token prompt, 64 greedy tokens), the two graphs interleaved.

    python scripts/explore_attention_export.py [--optimum OPTIMUM_FP32_ONNX] [--repeats 200]
    python scripts/explore_attention_export.py --decoder [--repeats 20] [--rounds 3]
"""
from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from bench_int8 import FINETUNED, ROOT

sys.path.insert(0, str(ROOT))

import tfc_cli.onnx_export as onnx_export  # noqa: E402
from tfc_cli.bench import Protocol, bench_inputs, ratio_interval, time_interleaved  # noqa: E402
from tfc_cli.runners import OrtRunner  # noqa: E402


@contextlib.contextmanager
def sdpa_export():
    """onnx_export as it was before: attention exported as the model was loaded."""
    saved = onnx_export.eager_attention
    onnx_export.eager_attention = lambda _model: contextlib.nullcontext()
    try:
        yield
    finally:
        onnx_export.eager_attention = saved


def decoder(repeats: int, rounds: int) -> None:
    from collections import Counter

    import onnx
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tfc_cli.lm.bench import prompt_ids, time_generation
    from tfc_cli.lm.runners import OrtLmRunner
    from tfc_cli.model_info import resolve_model
    from tfc_cli.quant.weight_only import weight_only_quantize

    folder = resolve_model("demo:smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="float32").eval()
    graphs = {"eager export (tfc)": onnx_export.export_decoder_onnx(model, tokenizer)}
    with sdpa_export():
        graphs = {"SDPA export": onnx_export.export_decoder_onnx(model, tokenizer)} | graphs
    runners = {}
    for name, graph in graphs.items():
        quantized, _ = weight_only_quantize(graph, 8, 128, tied_head=True)
        ops = Counter(n.op_type for n in onnx.load_from_string(quantized).graph.node)
        print(f"{name}: {sum(ops.values())} operators, {ops['Where']} Where")
        runners[name] = OrtLmRunner(quantized, model.config, 2)
    text = prompt_ids(tokenizer, "To be, or not to be, that is the question: whether tis nobler in the mind", 48)
    logits = [r({"input_ids": text}) for r in runners.values()]
    print(f"largest logit difference, eager vs SDPA export: {np.abs(logits[0] - logits[1]).max():.2e}")
    prompt = prompt_ids(tokenizer, "The quick brown fox jumps over the lazy dog. " * 20, 64)
    print("| round | SDPA export decode tokens/s | eager export (tfc) | ratio |\n|---|---:|---:|---:|")
    for round_ in range(rounds):
        timed = time_generation(runners, prompt, Protocol(threads=2, warmup=5, repeats=repeats), 64)
        sdpa, eager = (timed[n]["decode"]["tokens_per_s"] for n in runners)
        print(f"| {round_ + 1} | {sdpa:.1f} | {eager:.1f} | {eager / sdpa:.3f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--optimum", help="Optimum's fp32 model.onnx of the same checkpoint (bench_peers_encoder.py)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (encoder: 200; decoder: 20 per round)")
    parser.add_argument("--decoder", action="store_true", help="the causal LM decoder instead of the classifier")
    parser.add_argument("--rounds", type=int, default=3, help="decoder: interleaved runs")
    args = parser.parse_args()
    if args.decoder:
        decoder(args.repeats or 20, args.rounds)
        return
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(FINETUNED)
    model = AutoModelForSequenceClassification.from_pretrained(FINETUNED, attn_implementation="sdpa").eval()
    eager = onnx_export.export_onnx(model, tokenizer)
    with sdpa_export():
        sdpa = onnx_export.export_onnx(model, tokenizer)
    runners = {"SDPA export": OrtRunner(sdpa, 2), "eager export (tfc)": OrtRunner(eager, 2)}
    if args.optimum:
        runners["Optimum's export"] = OrtRunner(args.optimum, 2)
    batch = bench_inputs(tokenizer, ["a fine film with a dull plot", "short"], 8, 64)
    print(f"largest logit difference, eager vs SDPA export: {np.abs(runners['SDPA export'](batch) - runners['eager export (tfc)'](batch)).max():.2e}")
    timed = time_interleaved(runners, bench_inputs(tokenizer, ["a fine film with a dull plot"], 1, 64),
                             Protocol(threads=2, warmup=20, repeats=args.repeats or 200))
    print("| fp32 graph | p50 b1 ms | vs SDPA export [95%] |\n|---|---:|---:|")
    for name in runners:
        r = ratio_interval(timed["SDPA export"]["times_ms"], timed[name]["times_ms"])
        print(f"| {name} | {timed[name]['p50_ms']:.2f} | {r['ratio']:.2f}x [{r['low']:.2f}-{r['high']:.2f}] |")


if __name__ == "__main__":
    main()
