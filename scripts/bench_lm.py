"""Benchmark weight-only quantization of a causal LM against its fp32 weights, all measured now.

For each variant, a quantize-only recipe runs through `tfc compress`: perplexity on the test text (strided windows),
weights on disk, prefill latency and decode tokens/s, each against the fp32 torch model timed interleaved in the
same process (the recipe's report). The text is cut by lines into train (the first 80%, what GPTQ and AWQ calibrate
on) and test (the last 20%, what every variant is scored on), so no variant is scored on text it calibrated on and
all rows score the same tokens. Prints a Markdown table for docs/BENCHMARKS.md.

    python scripts/bench_lm.py [--model demo:smollm2-135m] [--text demo:hamlet] [--tokens 16384] [--repeats 20]
                               [--variants int4-rtn,int4-gptq]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "int8-rtn": "{type: quantize, method: weight-only, bits: 8, group_size: 32}",
    "int8-rtn-g128": "{type: quantize, method: weight-only, bits: 8, group_size: 128}",
    "int4-rtn": "{type: quantize, method: weight-only, bits: 4, group_size: 32}",
    "int4-hqq": "{type: quantize, method: weight-only, bits: 4, group_size: 32, algorithm: hqq}",
    "int4-gptq": "{type: quantize, method: weight-only, bits: 4, group_size: 32, algorithm: gptq}",
    "int4-gptq-act-order": "{type: quantize, method: weight-only, bits: 4, group_size: 32, algorithm: gptq, "
                           "act_order: true}",
    "int4-awq": "{type: quantize, method: weight-only, bits: 4, group_size: 32, algorithm: awq}",
    "int8-gptq": "{type: quantize, method: weight-only, bits: 8, group_size: 32, algorithm: gptq}",
    "int8-awq-g128": "{type: quantize, method: weight-only, bits: 8, group_size: 128, algorithm: awq}",
    "int8-gptq-g128": "{type: quantize, method: weight-only, bits: 8, group_size: 128, algorithm: gptq}",
}
TRAIN_SHARE = 0.8


def split_text(folder: Path, text: str) -> str:
    """{train: ..., test: ...}: the text's lines cut at TRAIN_SHARE, in order."""
    sys.path.insert(0, str(ROOT))
    from tfc_cli.lm.data import _cut, _read_source

    for name, part in zip(("train.txt", "test.txt"), _cut(_read_source(text), TRAIN_SHARE)):
        if not (folder / name).exists() or (folder / name).read_text() != part:  # a kept file keeps its date
            (folder / name).write_text(part)
    return f"{{train: {folder / 'train.txt'}, test: {folder / 'test.txt'}}}"


def recipe(folder: Path, variant: str, model: str, dataset: str, tokens: int, repeats: int) -> Path:
    name = f"lm-{variant}"
    path = folder / f"{name}.yaml"
    path.write_text(f"""name: {name}
model: {model}
task: {{type: causal-lm, dataset: {dataset}, max_length: 512, stride: 256, max_eval_tokens: {tokens}}}
stages:
  - {VARIANTS[variant]}
bench: {{seq_len: 64, decode_tokens: 64, warmup: 10, repeats: {repeats}}}
output: {folder / name}
""")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="demo:smollm2-135m")
    parser.add_argument("--text", default="demo:hamlet")
    parser.add_argument("--tokens", type=int, default=16384, help="tokens of the text scored for perplexity")
    parser.add_argument("--repeats", type=int, default=20, help="timed generations per model")
    parser.add_argument("--variants", default=",".join(v for v in VARIANTS if v != "int4-gptq-act-order"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tfc-bench-lm-") as tmp:
        dataset = split_text(Path(tmp), args.text)
        for variant in args.variants.split(","):
            path = recipe(Path(tmp), variant, args.model, dataset, args.tokens, args.repeats)
            subprocess.run([sys.executable, "-m", "tfc_cli", "compress", str(path)], check=True, cwd=ROOT)
            report = json.loads((Path(tmp) / path.stem / "report.json").read_text())
            rows.append((variant, report))
    b = rows[0][1]["models"]["baseline"]
    print(f"\n{args.model} on the last {1 - TRAIN_SHARE:.0%} of {args.text} ({b['metrics']['tokens']} tokens, window 512, "
          f"stride 256; GPTQ/AWQ calibrated on the first {TRAIN_SHARE:.0%}); prompt 64 tokens, "
          f"64 decoded, batch 1, {b['latency']['protocol']['threads']} threads, {args.repeats} generations per model\n")
    print("| variant | perplexity | change | weights on disk | size ratio | prefill p50 | prefill speedup | decode tokens/s "
          "| decode speedup | wall time |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for variant, r in rows:
        b, c, cmp_ = r["models"]["baseline"], r["models"]["compressed"], r["comparison"]
        if variant == rows[0][0]:
            print(f"| fp32 (torch) | {b['metrics']['perplexity']:.2f} | – | {b['size']['bytes_on_disk'] / 1e6:.1f} MB | 1 "
                  f"| {b['latency']['prefill']['p50_ms']:.1f} ms | – | {b['latency']['decode']['tokens_per_s']:.1f} | – | – |")
        print(f"| {variant} | {c['metrics']['perplexity']:.2f} | {(cmp_['perplexity_ratio'] - 1) * 100:+.1f}% | "
              f"{c['size']['bytes_on_disk'] / 1e6:.1f} MB | {1 / cmp_['size_ratio']:.2f}x smaller | "
              f"{c['latency']['prefill']['p50_ms']:.1f} ms | {cmp_['prefill_speedup']:.2f}x | "
              f"{c['latency']['decode']['tokens_per_s']:.1f} (fp32 {b['latency']['decode']['tokens_per_s']:.1f}) | "
              f"{cmp_['speedup']:.2f}x | {r['wall_s']:.0f} s |")


if __name__ == "__main__":
    main()
