"""The classifier's ONNX export with SDPA attention (as transformers loads it) vs eager attention (what tfc exports
since it measured this), and Optimum's export when given: fp32 logits compared on a padded batch, and batch-1
latency on ONNX Runtime, timed interleaved.

    python scripts/explore_attention_export.py [--optimum OPTIMUM_FP32_ONNX] [--repeats 200]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--optimum", help="Optimum's fp32 model.onnx of the same checkpoint (bench_peers_encoder.py)")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(FINETUNED)
    model = AutoModelForSequenceClassification.from_pretrained(FINETUNED, attn_implementation="sdpa").eval()
    eager = onnx_export.export_onnx(model, tokenizer)
    with contextlib.ExitStack() as stack:  # the export as it was before: attention as the model was loaded
        stack.callback(setattr, onnx_export, "eager_attention", onnx_export.eager_attention)
        onnx_export.eager_attention = lambda _model: contextlib.nullcontext()
        sdpa = onnx_export.export_onnx(model, tokenizer)
    runners = {"SDPA export": OrtRunner(sdpa, 2), "eager export (tfc)": OrtRunner(eager, 2)}
    if args.optimum:
        runners["Optimum's export"] = OrtRunner(args.optimum, 2)
    batch = bench_inputs(tokenizer, ["a fine film with a dull plot", "short"], 8, 64)
    print(f"largest logit difference, eager vs SDPA export: {np.abs(runners['SDPA export'](batch) - runners['eager export (tfc)'](batch)).max():.2e}")
    timed = time_interleaved(runners, bench_inputs(tokenizer, ["a fine film with a dull plot"], 1, 64),
                             Protocol(threads=2, warmup=20, repeats=args.repeats))
    print("| fp32 graph | p50 b1 ms | vs SDPA export [95%] |\n|---|---:|---:|")
    for name in runners:
        r = ratio_interval(timed["SDPA export"]["times_ms"], timed[name]["times_ms"])
        print(f"| {name} | {timed[name]['p50_ms']:.2f} | {r['ratio']:.2f}x [{r['low']:.2f}-{r['high']:.2f}] |")


if __name__ == "__main__":
    main()
