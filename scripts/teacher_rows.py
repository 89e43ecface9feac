"""What the one-stage benchmarks share: the fine-tuned MiniLM-L6 teacher, one `tfc compress` of it per row (reused
when its report exists, so an interrupted benchmark goes on), and a Markdown row from the report, where the teacher
and the row's model were evaluated on the same test split and timed interleaved in one process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEACHER = ROOT / "runs" / "rt-minilm-finetune"
TASK = {"type": "text-classification", "dataset": "demo:rotten-tomatoes", "max_length": 64}
HEADER = ["| model | test acc | vs teacher (pt) | params | p50 b1 (teacher) | speedup b1 [95%] | stage time | wall time |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]


def ensure_teacher() -> None:
    if not (TEACHER / "tfc.json").exists():
        subprocess.run([sys.executable, "-m", "tfc_cli", "compress", "recipes/rt-minilm-finetune.yaml"], check=True,
                       cwd=ROOT)


def run(out: Path, name: str, stage: dict) -> dict:
    """The report of the teacher compressed by `stage`, at batch 1, sequence 64, 100 timed calls."""
    folder = out / name
    if not (folder / "report.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, "model": str(TEACHER), "task": TASK, "stages": [stage],
                                        "bench": {"batch_size": 1, "seq_len": 64, "repeats": 100},
                                        "output": str(folder)}, sort_keys=False))
        subprocess.run([sys.executable, "-m", "tfc_cli", "compress", str(path), "--overwrite"], check=True, cwd=ROOT)
    return json.loads((folder / "report.json").read_text())


def measured(report: dict) -> dict:
    base, model, cmp = report["models"]["baseline"], report["models"]["compressed"], report["comparison"]
    return {"accuracy": model["metrics"]["accuracy"], "teacher_accuracy": base["metrics"]["accuracy"],
            "params": model["size"]["params"], "teacher_params": base["size"]["params"],
            "p50_ms": model["latency"]["p50_ms"], "teacher_p50_ms": base["latency"]["p50_ms"],
            "speedup": cmp["speedup"], "speedup_low": cmp["speedup_interval"]["low"],
            "speedup_high": cmp["speedup_interval"]["high"], "stage_s": report["stages"][0]["wall_s"],
            "wall_s": report["wall_s"], "summary": report["stages"][0].get("summary", {})}


def table(out: Path, rows: dict[str, tuple[str, dict]]) -> None:
    """Run each row (label -> (run name, stage)), print the Markdown table and write out/results.json."""
    lines, results = list(HEADER), {}
    for label, (name, stage) in rows.items():
        results[label] = measured(run(out, name, stage)) | {"stage": stage}
        if len(results) == 1:
            lines.append(teacher_line(results[label]))
        lines.append(line(label, results[label]))
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print("\n".join(lines))


def teacher_line(r: dict) -> str:
    return (f"| teacher (fine-tuned MiniLM-L6) | {r['teacher_accuracy']:.4f} | 0.00 | {r['teacher_params'] / 1e6:.2f} M | "
            f"{r['teacher_p50_ms']:.2f} ms | 1.00x | | |")


def line(label: str, r: dict) -> str:
    return (f"| {label} | {r['accuracy']:.4f} | {(r['accuracy'] - r['teacher_accuracy']) * 100:+.2f} | "
            f"{r['params'] / 1e6:.2f} M | {r['p50_ms']:.2f} ms ({r['teacher_p50_ms']:.2f}) | "
            f"{r['speedup']:.2f}x [{r['speedup_low']:.2f}-{r['speedup_high']:.2f}] | {r['stage_s'] / 60:.1f} min | "
            f"{r['wall_s'] / 60:.1f} min |")
