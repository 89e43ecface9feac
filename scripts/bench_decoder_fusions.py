"""What ONNX Runtime's fused decoder operators buy on SmolLM2-135M (demo:smollm2-135m), fp32 and int4, measured now.

The decoder graph is exported twice, plain and with `ort_fusions` (GroupQueryAttention, RotaryEmbedding,
SkipSimplifiedLayerNormalization), each then also quantized weight-only int4 (RTN, groups of 32). All four are
timed interleaved with tfc's generation protocol, and their logits compared with the plain fp32 graph's.

    python scripts/bench_decoder_fusions.py [--repeats 10] [--seq-len 64] [--decode-tokens 64]
"""
from __future__ import annotations

import argparse

import numpy as np

from tfc_cli.bench import Protocol
from tfc_cli.checkpoint import open_model
from tfc_cli.lm.bench import prompt_ids, time_generation
from tfc_cli.lm.data import load_text_data
from tfc_cli.lm.runners import OrtLmRunner
from tfc_cli.onnx_export import export_decoder_onnx
from tfc_cli.quant.weight_only import weight_only_quantize
from tfc_cli.recipe import TaskConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--decode-tokens", type=int, default=64)
    args = parser.parse_args()
    ckpt = open_model("demo:smollm2-135m")
    plain = export_decoder_onnx(ckpt.model, ckpt.tokenizer, ort_fusions=False)
    fused = export_decoder_onnx(ckpt.model, ckpt.tokenizer, ort_fusions=True)
    graphs = {"fp32 plain": plain, "fp32 fused": fused, "int4 plain": weight_only_quantize(plain, 4, 32)[0],
              "int4 fused": weight_only_quantize(fused, 4, 32)[0]}
    protocol = Protocol(1, args.seq_len, None, 5, args.repeats).resolved()
    runners = {name: OrtLmRunner(graph, ckpt.config, protocol.threads) for name, graph in graphs.items()}
    text = load_text_data(TaskConfig(type="causal-lm", dataset="demo:hamlet")).text
    prompt = prompt_ids(ckpt.tokenizer, text, args.seq_len)
    long = prompt_ids(ckpt.tokenizer, text, 512)
    reference = runners["fp32 plain"]({"input_ids": long})
    timing = time_generation(runners, prompt, protocol, args.decode_tokens)
    print(f"\nSmolLM2-135M on ONNX Runtime, prompt {args.seq_len} tokens + {args.decode_tokens} decoded, batch 1, "
          f"{protocol.threads} threads, {args.repeats} generations each, interleaved\n")
    print("| graph | prefill p50 ms | decode tokens/s | vs plain | max logit diff vs fp32 plain (512 tokens) |")
    print("|---|---:|---:|---:|---:|")
    for name, runner in runners.items():
        t = timing[name]
        base = timing[name.split()[0] + " plain"]["decode"]["tokens_per_s"]
        diff = float(np.abs(runner({"input_ids": long}) - reference).max())
        print(f"| {name} | {t['prefill']['p50_ms']:.1f} | {t['decode']['tokens_per_s']:.1f} | "
              f"{t['decode']['tokens_per_s'] / base:.2f}x | {diff:.3g} |")


if __name__ == "__main__":
    main()
