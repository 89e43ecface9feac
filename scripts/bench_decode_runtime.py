"""Where a decode step's time goes on ONNX Runtime, and what the runner's settings give.

1. Settings, timed interleaved in one process (the protocol of `tfc bench`: a 64-token prompt, then 64 greedy
   tokens with the KV cache): the KV cache passed as numpy arrays and copied out at each step vs kept in place in
   shared buffers (lm/shared_kv.py), and worker threads that sleep between operators vs spin within a run.
2. `--profile`: ORT's per-operator profile of the decode steps (prefill excluded), summed by operator type, and
   the time outside ORT's run (Python, argmax, binding) per step.

    python scripts/bench_decode_runtime.py OUTPUT_FOLDER_OR_ONNX [--model demo:smollm2-135m] [--threads 2]
        [--repeats 15] [--profile]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tfc_cli.bench import Protocol  # noqa: E402
from tfc_cli.lm.bench import prompt_ids, time_generation  # noqa: E402
from tfc_cli.lm.runners import OrtLmRunner  # noqa: E402

SETTINGS = {"KV copied, threads sleep": (False, False), "KV copied, threads spin in run": (False, True),
            "KV in place, threads sleep": (True, False), "KV in place, threads spin in run": (True, True)}
PROMPT, DECODE = 64, 64


def graph_and_config(source: str, model: str):
    from transformers import AutoConfig, AutoTokenizer

    from tfc_cli.model_info import resolve_model

    path = Path(source)
    graph = path / "model.onnx" if path.is_dir() else path
    folder = path if path.is_dir() and (path / "config.json").exists() else Path(resolve_model(model))
    return str(graph), AutoConfig.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def profile(graph: str, config, prompt: np.ndarray, threads: int) -> None:
    import onnx
    import onnxruntime as ort

    from tfc_cli.lm.shared_kv import shared_kv_graph

    runner = OrtLmRunner(graph, config, threads)  # with the runner's default settings
    model = onnx.load(graph)
    if runner.shared_kv:
        model = shared_kv_graph(model, runner.past_names, runner.output_names[1:])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "decode")
        runner.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        runner._buffers = []  # bound anew to this session
        logits, cache = runner.prefill(prompt)
        for _ in range(8):  # warm
            logits, cache = runner.step(int(np.argmax(logits)), cache)
        logits, cache = runner.prefill(prompt)
        start = time.perf_counter()
        for _ in range(DECODE):
            logits, cache = runner.step(int(np.argmax(logits)), cache)
        wall = (time.perf_counter() - start) / DECODE
        events = json.loads(Path(runner.session.end_profiling()).read_text())
    runs = [e for e in events if e.get("name") == "model_run"]
    decode_runs = runs[-DECODE:]
    first = decode_runs[0]["ts"]
    by_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first:
            by_op[e["args"]["op_name"]] = by_op.get(e["args"]["op_name"], 0) + e["dur"]
    in_run = statistics.mean(r["dur"] for r in decode_runs) / 1000
    print(f"\ndecode step: {wall * 1000:.2f} ms wall, of which ORT run {in_run:.2f} ms "
          f"(outside: {wall * 1000 - in_run:.2f} ms: Python, argmax, binding)")
    total = sum(by_op.values())
    print("| operator | ms per step | share of operator time |\n|---|---:|---:|")
    for op, us in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"| {op} | {us / DECODE / 1000:.3f} | {us / total:.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source", help="a tfc output folder (its model.onnx) or a decoder .onnx file")
    parser.add_argument("--model", default="demo:smollm2-135m", help="config and tokenizer when SOURCE has none")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    graph, config, tokenizer = graph_and_config(args.source, args.model)
    prompt = prompt_ids(tokenizer, "The quick brown fox jumps over the lazy dog. " * 20, PROMPT)
    if args.profile:
        profile(graph, config, prompt, args.threads)
        return
    runners = {name: OrtLmRunner(graph, config, args.threads, shared_kv=shared, spin_within_run=spin)
               for name, (shared, spin) in SETTINGS.items()}
    timed = time_generation(runners, prompt, Protocol(threads=args.threads, warmup=5, repeats=args.repeats), DECODE)
    base = timed[next(iter(SETTINGS))]["decode"]
    print(f"\n{args.source}: {args.threads} threads, {PROMPT}-token prompt, {DECODE} decoded, {args.repeats} "
          "interleaved repeats\n")
    print("| runner setting | decode tokens/s | ms/token p50 [min-max] | vs KV copied, sleep | prefill p50 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, t in timed.items():
        per = t["decode"]["ms_per_token"]
        print(f"| {name} | {t['decode']['tokens_per_s']:.1f} | {statistics.median(per):.2f} [{min(per):.2f}-"
              f"{max(per):.2f}] | {t['decode']['tokens_per_s'] / base['tokens_per_s']:.2f}x | "
              f"{t['prefill']['p50_ms']:.1f} |")


if __name__ == "__main__":
    main()
