"""tfc's INT8 MiniLM-L6 against Optimum's (ORTQuantizer) and OpenVINO's (NNCF post-training quantization, run on the
OpenVINO runtime), measured in one process: test accuracy on the same split, latency at batch 1 and 32 timed
interleaved.

1. The fine-tuned fp32 MiniLM-L6 (runs/rt-minilm-finetune; made by `tfc compress recipes/rt-minilm-finetune.yaml`
   if missing, as scripts/bench_int8.py does).
2. tfc's INT8: `tfc compress` of a quantize-only recipe (`--tfc static-int8:backend=openvino,...`), run on the
   output's own runtime (OpenVINO for `backend: openvino`, whose graph NNCF quantized; else ONNX Runtime).
3. OpenVINO: tfc's fp32 ONNX export read by `openvino.convert_model`; INT8 by `nncf.quantize` (model type
   TRANSFORMER, as NNCF recommends for BERT-like models) on the same 256 calibration examples tfc's static INT8
   draws (seed 0, padded to 64 tokens). Compiled for CPU with the latency hint and the given threads. On CPUs with
   AMX or AVX-512 BF16, OpenVINO runs float layers in bf16 unless told otherwise: both precisions are measured
   (`INFERENCE_PRECISION_HINT` f32 and the default).
4. Optimum: in its own virtual environment (optimum-onnx pins transformers < 4.58; made on first use under
   ~/.cache/tfc/peers), scripts/peers/optimum_quantize.py exports the checkpoint with Optimum's exporter and quantizes
   it with ORTQuantizer's defaults for this CPU (dynamic, and static on the same calibration examples); the graphs
   it writes run here on the same ONNX Runtime as tfc's.

    pip install -e '.[openvino]'       # openvino and nncf (also in the test extras)
    python scripts/bench_peers_encoder.py [--repeats 200] [--tfc static-int8:backend=openvino,dynamic-int8]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_int8 import FINETUNED, ROOT, quantize_recipe, tfc

sys.path.insert(0, str(ROOT))

from tfc_cli.bench import Protocol, bench_inputs, environment, ratio_interval, time_interleaved  # noqa: E402
from tfc_cli.evaluate import evaluate  # noqa: E402
from tfc_cli.runners import OpenVinoRunner, OrtRunner  # noqa: E402

CALIBRATION_SAMPLES, MAX_LENGTH = 256, 64
OPTIMUM_VENV = Path.home() / ".cache" / "tfc" / "peers" / "optimum-venv"
OPTIMUM_PACKAGES = ("torch==2.13.0", "optimum-onnx[onnxruntime]", "datasets", "huggingface-hub<1.0")


def calibration_items(data, tokenizer, names: list[str]) -> list[dict]:
    """The examples tfc's static INT8 calibrates on: a seed-0 sample of training rows, padded to MAX_LENGTH."""
    from tfc_cli.quant.onnx_int8 import calibration_batches

    train = data.split("train")
    rows = train.select(sorted(random.Random(0).sample(range(len(train)), min(CALIBRATION_SAMPLES, len(train)))))
    pairs = rows["text_pair"] if "text_pair" in rows.column_names else None
    return calibration_batches(tokenizer, rows["text"], pairs, MAX_LENGTH, names)


def optimum_python() -> Path:
    """Optimum's own environment, made once (a marker file says the install finished)."""
    python, done = OPTIMUM_VENV / "bin" / "python", OPTIMUM_VENV / "tfc-installed"
    if not done.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(OPTIMUM_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *OPTIMUM_PACKAGES], check=True)
        done.write_text(" ".join(OPTIMUM_PACKAGES))
    return python


def optimum_graphs(calibration: list[dict], work: Path) -> tuple[dict[str, Path], dict]:
    """Optimum's fp32 export and its dynamic and static INT8 graphs of the fine-tuned model, and the versions that
    made them."""
    from tfc_cli.bench import cpu_description

    flags = cpu_description()["flags"]
    isa = "avx512_vnni" if flags.get("avx512_vnni") else "avx512" if flags.get("avx512f") else "avx2"
    np.savez(work / "calibration.npz", **{k: np.concatenate([b[k] for b in calibration]) for k in calibration[0]})
    out = work / "optimum"
    subprocess.run([str(optimum_python()), str(ROOT / "scripts" / "peers" / "optimum_quantize.py"), str(FINETUNED),
                    str(work / "calibration.npz"), str(out), isa], check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    versions = json.loads((out / "versions.json").read_text()) | {"isa": isa}
    return {"fp32 export": out / "fp32" / "model.onnx"} | {
        f"{mode} INT8": out / mode / "model_quantized.onnx" for mode in ("dynamic", "static")}, versions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200, help="timed calls at batch 1 (a quarter at batch 32)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tfc", default="static-int8:backend=openvino,static-int8:smoothquant=auto,dynamic-int8",
                        help="tfc INT8 methods, each with stage options as key=value joined by + (backend=openvino: "
                             "quantized by NNCF, run on OpenVINO; else onnxruntime)")
    args = parser.parse_args()
    import nncf
    import openvino as ov
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tfc_cli.data import load_task_data
    from tfc_cli.onnx_export import export_onnx, input_names
    from tfc_cli.recipe import parse_recipe

    if not (FINETUNED / "tfc.json").exists():
        tfc("compress", "recipes/rt-minilm-finetune.yaml", "--overwrite")
    tokenizer = AutoTokenizer.from_pretrained(FINETUNED)
    model = AutoModelForSequenceClassification.from_pretrained(FINETUNED).eval()
    fp32 = export_onnx(model, tokenizer)
    names = input_names(tokenizer, model)
    runners, sizes, notes = {}, {}, []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recipe = None
        for spec in args.tfc.split(","):
            method, *extra = spec.split(":")
            options = [kv for kv in (extra[0] if extra else "").split("+") if kv]
            backend = next((kv.split("=")[1] for kv in options if kv.startswith("backend=")), "onnxruntime")
            options = "+".join(kv for kv in options if not kv.startswith("backend="))
            recipe = quantize_recipe(tmp, method, backend, 10, options)
            tfc("compress", str(recipe), "--quiet")
            graph = (tmp / recipe.stem / "model.onnx").read_bytes()
            summary = json.loads((tmp / recipe.stem / "report.json").read_text())["stages"][0]["summary"]
            if (summary.get("smoothquant") or {}).get("tried"):  # smoothquant: auto
                notes.append(f"tfc {spec}: validation KL to float / accuracy per candidate: " + ", ".join(
                    f"{t['alpha'] if t['alpha'] is not None else 'none'} {t['validation_kl_to_float']:.5f} / "
                    f"{t['validation_accuracy']:.4f}" for t in summary["smoothquant"]["tried"])
                    + f"; kept {summary['smoothquant']['alpha']}")
            key = f"tfc {spec} ({backend})"
            runners[key] = (OpenVinoRunner if backend == "openvino" else OrtRunner)(graph, args.threads)
            sizes[key] = len(graph)
        data = load_task_data(parse_recipe(recipe).task, seed=0, hold_out_test=True)
        (tmp / "fp32.onnx").write_bytes(fp32)
        ov_fp32 = ov.convert_model(str(tmp / "fp32.onnx"))
        calibration = calibration_items(data, tokenizer, names)
        ov_int8 = nncf.quantize(ov_fp32, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                                subset_size=CALIBRATION_SAMPLES)
        for label, graph in (("fp32", ov_fp32), ("int8 NNCF", ov_int8)):
            ov.save_model(graph, str(tmp / f"ov-{label}.xml"), compress_to_fp16=False)
            size = sum(p.stat().st_size for p in tmp.glob(f"ov-{label}.*"))
            for precision in ("f32", None):
                key = f"OpenVINO {label} ({precision or 'default precision'})"
                runners[key], sizes[key] = OpenVinoRunner(graph, args.threads, precision), size
        graphs, optimum_versions = optimum_graphs(calibration, tmp)
        for mode, path in graphs.items():
            key = f"Optimum {mode} ({optimum_versions['isa']} defaults, onnxruntime)"
            runners[key], sizes[key] = OrtRunner(path.read_bytes(), args.threads), path.stat().st_size
        runners = {"fp32 (onnxruntime)": OrtRunner(fp32, args.threads)} | runners
        sizes["fp32 (onnxruntime)"] = len(fp32)
        accuracy = {name: evaluate(r, tokenizer, data, MAX_LENGTH, split="test", label=name)["accuracy"]
                    for name, r in runners.items()}
        texts = data.split("test")["text"][:64]
        timed = {b: time_interleaved(runners, bench_inputs(tokenizer, texts, b, MAX_LENGTH),
                                     Protocol(batch_size=b, seq_len=MAX_LENGTH, threads=args.threads, warmup=20,
                                              repeats=args.repeats if b == 1 else max(10, args.repeats // 4)))
                 for b in (1, 32)}
    env = environment(args.threads)
    base = "fp32 (onnxruntime)"
    print(f"\nMiniLM-L6 fine-tuned on rotten-tomatoes; test n={len(data.split('test'))}; {args.threads} threads; "
          f"CPU {env['cpu']['model']} ({', '.join(f for f, on in env['cpu']['flags'].items() if on)}); onnxruntime "
          f"{env['versions']['onnxruntime']}, openvino {ov.__version__}, nncf {nncf.__version__}; Optimum (own "
          f"environment): {', '.join(f'{k} {v}' for k, v in optimum_versions.items())}\n")
    print("| model (runtime) | test accuracy | drop (pt) | size | p50 b1 ms | vs fp32 ORT b1 [95%] | p50 b32 ms | "
          "vs fp32 ORT b32 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in runners:
        b1, b32 = timed[1][name], timed[32][name]
        r1 = ratio_interval(timed[1][base]["times_ms"], b1["times_ms"])
        print(f"| {name} | {accuracy[name]:.4f} | {(accuracy[base] - accuracy[name]) * 100:.2f} | "
              f"{sizes[name] / 1e6:.1f} MB | {b1['p50_ms']:.2f} | "
              f"{r1['ratio']:.2f}x [{r1['low']:.2f}-{r1['high']:.2f}] | {b32['p50_ms']:.1f} | "
              f"{timed[32][base]['p50_ms'] / b32['p50_ms']:.2f}x |")
    load = statistics.mean(t["protocol"]["other_processes_cpu_cores"] for t in timed[1].values())
    print(f"\nother processes used {load:.2f} cores on average while timing (batch 1)")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
