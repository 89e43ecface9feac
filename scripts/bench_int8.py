"""Benchmark dynamic INT8 on both backends against the fine-tuned fp32 MiniLM-L6, all measured now.

1. `tfc compress recipes/rt-minilm-finetune.yaml` (skipped if runs/rt-minilm-finetune exists; --refit redoes it)
2. for each backend, a quantize-only recipe on that checkpoint: test accuracy, size and latency of the INT8 model
   against the fp32 model, timed interleaved in the same process.
Prints a Markdown table for docs/BENCHMARKS.md.

    python scripts/bench_int8.py [--repeats 200] [--refit]
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


def tfc(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "tfc_cli", *args], check=True, cwd=ROOT)


def quantize_recipe(folder: Path, backend: str, repeats: int, batch_size: int) -> Path:
    name = f"rt-minilm-int8-{backend}-b{batch_size}"
    path = folder / f"{name}.yaml"
    path.write_text(f"""name: {name}
model: {FINETUNED}
task: {{type: text-classification, dataset: "demo:rotten-tomatoes", max_length: 64}}
stages:
  - {{type: quantize, method: dynamic-int8, backend: {backend}}}
bench: {{batch_size: {batch_size}, seq_len: 64, warmup: 20, repeats: {repeats}}}
output: {folder / name}
""")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--refit", action="store_true", help="fine-tune again even if the checkpoint exists")
    args = parser.parse_args()
    if args.refit or not (FINETUNED / "tfc.json").exists():
        tfc("compress", "recipes/rt-minilm-finetune.yaml", "--overwrite")
    ft = json.loads((FINETUNED / "report.json").read_text())
    stage = ft["stages"][0]
    rows = [f"Fine-tuning: {stage['summary']['train_examples']} examples, 1 epoch, {stage['wall_s']:.0f} s; "
            f"test accuracy {ft['models']['compressed']['metrics']['accuracy']:.4f} "
            f"(n={ft['models']['compressed']['metrics']['samples']}).", "",
            "| backend | batch | fp32 acc | int8 acc | drop (pt) | size fp32 -> int8 | ratio | p50 fp32 | p50 int8 | speedup |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        for batch_size in (1, 32):
            for backend in ("onnxruntime", "torch"):
                recipe = quantize_recipe(Path(tmp), backend, args.repeats if batch_size == 1 else args.repeats // 4, batch_size)
                tfc("compress", str(recipe), "--quiet")
                r = json.loads((Path(tmp) / recipe.stem / "report.json").read_text())
                b, c, cmp_ = r["models"]["baseline"], r["models"]["compressed"], r["comparison"]
                rows.append(f"| {backend} | {batch_size} | {b['metrics']['accuracy']:.4f} | {c['metrics']['accuracy']:.4f} | "
                            f"{-cmp_['metric_delta'] * 100:.2f} | {b['size']['bytes_on_disk'] / 1e6:.1f} MB -> "
                            f"{c['size']['bytes_on_disk'] / 1e6:.1f} MB | {cmp_['size_ratio']:.3f} | "
                            f"{b['latency']['p50_ms']:.2f} ms | {c['latency']['p50_ms']:.2f} ms | {cmp_['speedup']:.2f}x |")
        env = r["environment"]
    rows += ["", f"CPU {env['cpu']['model']}, {env['threads']} threads; flags: "
             + ", ".join(f for f, on in env["cpu"]["flags"].items() if on)
             + "; versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
