"""Benchmark CoFi pruning (60% and 90% of the weights, or a latency target such as 2x; each with and without INT8)
against the fine-tuned MiniLM-L6 teacher and against the naive competitor: the teacher cut to its first k layers and
fine-tuned as long.

Steps (each skipped when its output already holds a report, so an interrupted run can go on):
1. the teacher: `tfc compress recipes/rt-minilm-finetune.yaml`
2. CoFi: the cofi stage of recipes/rt-minilm-cofi60-int8.yaml and rt-minilm-cofi90.yaml, or of
   rt-minilm-cofi-2x-int8.yaml with each `--speedups` target, run on the teacher
3. INT8: dynamic-int8 and static-int8 (ONNX Runtime) and static-int8 for OpenVINO (NNCF) recipes on each CoFi result
4. truncated teachers: first k layers, k matching each CoFi result's prunable weights, fine-tuned for as many
   epochs as CoFi trained (pruning + fine-tuning)
5. latency of every model against the teacher, interleaved in one process (`tfc bench --baseline`), batch 1 and 32,
   `--runs` times
Prints a Markdown table for docs/BENCHMARKS.md and writes runs/bench-cofi/results.json.

    python scripts/bench_cofi.py [--repeats 100] [--sparsities 60,90] [--speedups 2] [--latency-runtime torch]
        [--runs 1] [--no-first-k] [--schedule 6,2,2]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

import tfc_cli
from tfc_cli.arch import family_for

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT / "runs" / "rt-minilm-finetune"
OUT = ROOT / "runs" / "bench-cofi"
# The INT8 conversions of each CoFi result: output-name suffix, row label, quantize stage options.
INT8_VARIANTS = [("int8", "INT8 (ORT)", {"method": "dynamic-int8", "backend": "onnxruntime"}),
                 ("int8-static", "static INT8 (ORT)", {"method": "static-int8", "backend": "onnxruntime"}),
                 ("int8-openvino", "static INT8 (NNCF, OpenVINO)", {"method": "static-int8", "backend": "openvino"})]
TASK = {"type": "text-classification", "dataset": "demo:rotten-tomatoes", "max_length": 64}


def tfc(*args: str, capture: bool = False) -> str:
    done = subprocess.run([sys.executable, "-m", "tfc_cli", *args], check=True, cwd=ROOT,
                          stdout=subprocess.PIPE if capture else None, text=True)
    return done.stdout if capture else ""


def run_recipe(name: str, model: Path, stages: list[dict]) -> dict:
    """Run a recipe unless its report exists; returns the report."""
    out = OUT / name
    if not (out / "report.json").exists():
        path = OUT / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, "model": str(model), "task": TASK, "stages": stages,
                                        "bench": {"batch_size": 1, "seq_len": 64}, "output": str(out)}, sort_keys=False))
        tfc("compress", str(path), "--overwrite")
    return json.loads((out / "report.json").read_text())


def cofi_stage(recipe: str, **overrides) -> dict:
    """The cofi stage of a shipped recipe, with `overrides`."""
    spec = yaml.safe_load((ROOT / "recipes" / f"{recipe}.yaml").read_text())
    return next(s for s in spec["stages"] if s["type"] == "cofi") | overrides


def truncated_teacher(k: int) -> Path:
    """The teacher with only its first k encoder layers, saved as a plain HF folder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = OUT / f"teacher-first{k}"
    if not (folder / "config.json").exists():
        model = AutoModelForSequenceClassification.from_pretrained(TEACHER)
        model.bert.encoder.layer = model.bert.encoder.layer[:k]
        model.config.num_hidden_layers = k
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(TEACHER).save_pretrained(folder)
    return folder


def latency(model: Path, batch: int, repeats: int) -> dict:
    result = json.loads(tfc("bench", str(model), "--baseline", str(TEACHER), "--batch-size", str(batch), "--seq-len", "64",
                            "--warmup", "10", "--repeats", str(repeats), "--json", capture=True))
    return {"p50_ms": result["models"]["model"]["latency"]["p50_ms"],
            "teacher_p50_ms": result["models"]["baseline"]["latency"]["p50_ms"], "speedup": result["speedup"],
            "interval": [result["speedup_interval"]["low"], result["speedup_interval"]["high"]],
            "bytes": result["models"]["model"]["size"]["bytes_on_disk"], "params": result["models"]["model"]["size"]["params"]}


def repeated(runs: list[dict]) -> dict:
    """Several `latency` processes of one model: the median run's numbers, every run's speedup beside them."""
    median = sorted(runs, key=lambda r: r["speedup"])[len(runs) // 2]
    return median | {"speedups": [round(r["speedup"], 3) for r in runs]}


def speedup_cell(timing: dict) -> str:
    """The median run's speedup, with the range over runs when there were several."""
    runs = timing["speedups"]
    return f"{timing['speedup']:.2f}x" + (f" ({min(runs):.2f}-{max(runs):.2f})" if len(runs) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=100, help="timed calls at batch 1 (a quarter at batch 32)")
    parser.add_argument("--sparsities", default="60,90", help="CoFi weight targets to run (of 60, 90; '' for none)")
    parser.add_argument("--speedups", default="", help="CoFi latency targets to run (e.g. 2,3): target_speedup with "
                        "the schedule of rt-minilm-cofi-2x-int8.yaml")
    parser.add_argument("--latency-runtime", default="torch", help="the runtime the --speedups targets are measured "
                        "on (latency_runtime: torch, onnxruntime, openvino, openvino-int8)")
    parser.add_argument("--runs", type=int, default=1, help="`tfc bench` processes per model and batch size, "
                        "alternating between the models; the table shows the median run and the range")
    parser.add_argument("--no-first-k", action="store_true", help="skip the truncated-teacher competitors")
    parser.add_argument("--schedule", default="", help="EPOCHS,WARMUP,FINETUNE: the --speedups runs' cofi epochs, "
                        "sparsity_warmup_epochs and finetune_epochs instead of the recipe's (output names gain -eEwWfF)")
    args = parser.parse_args()
    schedule, suffix = {}, ""
    if args.schedule:
        epochs, warmup, finetune = (int(x) for x in args.schedule.split(","))
        schedule = {"epochs": epochs, "sparsity_warmup_epochs": warmup, "finetune_epochs": finetune}
        suffix = f"-e{epochs}w{warmup}f{finetune}"
    OUT.mkdir(parents=True, exist_ok=True)
    if not (TEACHER / "tfc.json").exists():
        tfc("compress", "recipes/rt-minilm-finetune.yaml")
    teacher_report = json.loads((TEACHER / "report.json").read_text())
    dims = family_for(tfc_cli.load(TEACHER).model).dims()
    layer_params = dims.prunable_params() // dims.num_layers  # attention+FFN weights per layer
    rows = {"teacher (fp32)": {"folder": TEACHER, "accuracy": teacher_report["models"]["compressed"]["metrics"]["accuracy"],
                               "prunable": dims.prunable_params(), "wall_s": teacher_report["wall_s"]}}
    # The teacher quantized alone: what pruning adds on top of INT8.
    ov = run_recipe("teacher-int8-openvino", TEACHER, [{"type": "quantize", "method": "static-int8", "backend": "openvino"}])
    rows["teacher + static INT8 (NNCF, OpenVINO)"] = {"folder": OUT / "teacher-int8-openvino", "prunable": dims.prunable_params(),
                                                      "accuracy": ov["models"]["compressed"]["metrics"]["accuracy"],
                                                      "wall_s": teacher_report["wall_s"] + ov["wall_s"]}
    points = [(f"CoFi {s}%", f"cofi{s}", cofi_stage({60: "rt-minilm-cofi60-int8", 90: "rt-minilm-cofi90"}[s]))
              for s in map(int, filter(None, args.sparsities.split(",")))]
    on = "" if args.latency_runtime == "torch" else f" on {args.latency_runtime}"
    points += [(f"CoFi {x:g}x latency target{on}{suffix}", f"cofi-{x:g}x{on.replace(' on ', '-')}{suffix}",
                cofi_stage("rt-minilm-cofi-2x-int8", target_speedup=x, latency_runtime=args.latency_runtime, **schedule))
               for x in map(float, filter(None, args.speedups.split(",")))]
    for label, name, cofi in points:
        report = run_recipe(name, TEACHER, [cofi])
        pruning = report["structure"]
        rows[f"{label} (fp32)"] = {"folder": OUT / name, "accuracy": report["models"]["compressed"]["metrics"]["accuracy"],
                                   "prunable": pruning["prunable_params"], "wall_s": report["wall_s"], "structure": pruning}
        for tail, row_label, quantize in INT8_VARIANTS:
            q = run_recipe(f"{name}-{tail}", OUT / name, [{"type": "quantize", **quantize}])
            rows[f"{label} + {row_label}"] = {"folder": OUT / f"{name}-{tail}",
                                              "accuracy": q["models"]["compressed"]["metrics"]["accuracy"],
                                              "prunable": pruning["prunable_params"], "wall_s": report["wall_s"] + q["wall_s"]}
        if args.no_first_k:
            continue
        k = max(1, round(pruning["prunable_params"] / layer_params))
        epochs = cofi["epochs"] + cofi["finetune_epochs"]
        trunc = run_recipe(f"first{k}-ft{epochs}", truncated_teacher(k),
                           [{"type": "finetune", "epochs": epochs, "learning_rate": 1e-4, "batch_size": 32}])
        rows[f"first {k} layers, fine-tuned {epochs} ep"] = {"folder": OUT / f"first{k}-ft{epochs}",
                                                           "accuracy": trunc["models"]["compressed"]["metrics"]["accuracy"],
                                                           "prunable": k * layer_params, "wall_s": trunc["wall_s"]}
    timings = {(name, batch): [] for name in rows for batch in (1, 32)}
    for _ in range(args.runs):
        for name, row in rows.items():
            timings[name, 1].append(latency(row["folder"], 1, args.repeats))
            timings[name, 32].append(latency(row["folder"], 32, max(10, args.repeats // 4)))
    for name, row in rows.items():
        row["b1"], row["b32"] = repeated(timings[name, 1]), repeated(timings[name, 32])
    base_acc = rows["teacher (fp32)"]["accuracy"]
    lines = ["| model | test acc | drop (pt) | prunable params | total params | bytes on disk | p50 b1 | speedup b1 | p50 b32 | speedup b32 | wall time |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['accuracy']:.4f} | {(base_acc - r['accuracy']) * 100:.2f} | {r['prunable'] / 1e6:.2f} M | "
                     f"{r['b1']['params'] / 1e6:.2f} M | {r['b1']['bytes'] / 1e6:.1f} MB | {r['b1']['p50_ms']:.2f} ms | "
                     f"{speedup_cell(r['b1'])} | {r['b32']['p50_ms']:.1f} ms | {speedup_cell(r['b32'])} | {r['wall_s'] / 60:.1f} min |")
    for name, r in rows.items():
        if "structure" in r:
            s = r["structure"]
            lines.append(f"\n{name}: hidden {s['hidden_size']}/{s['hidden_size_total']}, heads per layer "
                         f"{[x['heads'] for x in s['layers']]}, FFN units per layer {[x['ffn'] for x in s['layers']]}")
    (OUT / "results.json").write_text(json.dumps({k: {kk: (str(vv) if isinstance(vv, Path) else vv) for kk, vv in v.items()}
                                                  for k, v in rows.items()}, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
