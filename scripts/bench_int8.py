"""Benchmark INT8 methods against the fine-tuned fp32 MiniLM-L6, all measured now.

1. `tfc compress recipes/rt-minilm-finetune.yaml` (skipped if runs/rt-minilm-finetune exists; --refit redoes it)
2. for each method/backend, a quantize-only recipe on that checkpoint: test accuracy, size, and latency at
   batch 1 against the fp32 model, timed interleaved in the same process (the recipe's report)
3. `tfc bench INT8 --baseline FP32 --batch-size 32` for latency at batch 32, interleaved likewise
Prints a Markdown table for docs/BENCHMARKS.md.

    python scripts/bench_int8.py [--repeats 200] [--refit] [--methods dynamic-int8:onnxruntime,static-int8:onnxruntime]
    (a method may carry stage options: static-int8:onnxruntime:smoothquant=0.5+calibration=percentile)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FINETUNED = ROOT / "runs" / "rt-minilm-finetune"
METHODS = ("dynamic-int8:onnxruntime", "dynamic-int8:torch", "static-int8:onnxruntime", "qat-int8:onnxruntime")


def tfc(*args: str, capture: bool = False) -> str:
    done = subprocess.run([sys.executable, "-m", "tfc_cli", *args], check=True, cwd=ROOT, text=True,
                          stdout=subprocess.PIPE if capture else None)
    return done.stdout if capture else ""


def quantize_recipe(folder: Path, method: str, backend: str, repeats: int, extra: str = "") -> Path:
    """`extra`: more stage parameters as `key=value` joined by `+`, e.g. `smoothquant=0.5+calibration=percentile`."""
    options = "".join(f", {kv.replace('=', ': ')}" for kv in extra.split("+") if kv)
    name = f"rt-minilm-{method}-{backend}" + "".join(f"-{kv.replace('=', '')}" for kv in extra.split("+") if kv)
    path = folder / f"{name}.yaml"
    path.write_text(f"""name: {name}
model: {FINETUNED}
task: {{type: text-classification, dataset: "demo:rotten-tomatoes", max_length: 64}}
stages:
  - {{type: quantize, method: {method}, backend: {backend}{options}}}
bench: {{batch_size: 1, seq_len: 64, warmup: 20, repeats: {repeats}}}
output: {folder / name}
""")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200, help="timed calls at batch 1 (a quarter at batch 32)")
    parser.add_argument("--refit", action="store_true", help="fine-tune again even if the checkpoint exists")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated method:backend pairs")
    args = parser.parse_args()
    if args.refit or not (FINETUNED / "tfc.json").exists():
        tfc("compress", "recipes/rt-minilm-finetune.yaml", "--overwrite")
    ft = json.loads((FINETUNED / "report.json").read_text())
    stage = ft["stages"][0]
    rows = [(f"Fine-tuning: {stage['summary']['train_examples']} examples, 1 epoch, {stage['wall_s']:.0f} s; "
             f"test accuracy {ft['models']['compressed']['metrics']['accuracy']:.4f} "
             f"(n={ft['models']['compressed']['metrics']['samples']})."), "",
            "| method | backend | fp32 acc | int8 acc | drop (pt) | size fp32 -> int8 | ratio | p50 b1 fp32 -> int8 | "
            "speedup b1 | speedup b32 | quantize time |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.methods.split(","):
            method, backend, *extra = pair.split(":")
            recipe = quantize_recipe(Path(tmp), method, backend, args.repeats, extra[0] if extra else "")
            tfc("compress", str(recipe), "--quiet")
            out = Path(tmp) / recipe.stem
            r = json.loads((out / "report.json").read_text())
            b32 = json.loads(tfc("bench", str(out), "--baseline", str(FINETUNED), "--batch-size", "32", "--seq-len", "64",
                                 "--warmup", "5", "--repeats", str(max(10, args.repeats // 4)), "--json", capture=True))
            b, c, cmp_ = r["models"]["baseline"], r["models"]["compressed"], r["comparison"]
            rows.append(f"| {method}{' ' + extra[0] if extra else ''} | {backend} | {b['metrics']['accuracy']:.4f} | {c['metrics']['accuracy']:.4f} | "
                        f"{-cmp_['metric_delta'] * 100:.2f} | {b['size']['bytes_on_disk'] / 1e6:.1f} MB -> "
                        f"{c['size']['bytes_on_disk'] / 1e6:.1f} MB | {cmp_['size_ratio']:.3f} | "
                        f"{b['latency']['p50_ms']:.2f} -> {c['latency']['p50_ms']:.2f} ms | {cmp_['speedup']:.2f}x | "
                        f"{b32['speedup']:.2f}x | {r['stages'][0]['wall_s']:.0f} s |")
            tried = (r["stages"][0]["summary"].get("smoothquant") or {}).get("tried")
            if tried:  # smoothquant: auto
                notes.append(f"{pair}: validation KL to float / accuracy per alpha: " + ", ".join(
                    f"{t['alpha'] if t['alpha'] is not None else 'none'} {t['validation_kl_to_float']:.5f} / "
                    f"{t['validation_accuracy']:.4f}" for t in tried)
                    + f"; kept {r['stages'][0]['summary']['smoothquant']['alpha']}")
        env = r["environment"]
    rows += ["", f"CPU {env['cpu']['model']}, {env['threads']} threads; flags: "
             + ", ".join(f for f, on in env["cpu"]["flags"].items() if on)
             + "; versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())] + notes
    print("\n".join(rows))


if __name__ == "__main__":
    main()
