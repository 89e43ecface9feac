"""Dynamic INT8 settings of onnxruntime's `quantize_dynamic` on tfc's export of the fine-tuned MiniLM-L6: weights
per tensor or per channel, and the attention's activation-activation MatMuls quantized too (`MatMulConstBOnly`
off, as Optimum's output has them) or not; test accuracy and batch-1 latency, timed interleaved with fp32.

    python scripts/explore_dynamic_int8_settings.py [--repeats 200]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench_int8 import FINETUNED, ROOT, quantize_recipe

sys.path.insert(0, str(ROOT))

from tfc_cli.bench import Protocol, bench_inputs, ratio_interval, time_interleaved  # noqa: E402
from tfc_cli.evaluate import evaluate  # noqa: E402
from tfc_cli.runners import OrtRunner  # noqa: E402

SETTINGS = {"per tensor, constant-weight MatMuls only": (False, True), "per channel (tfc's default)": (True, True),
            "per tensor, attention MatMuls too": (False, False), "per channel, attention MatMuls too": (True, False)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tfc_cli.data import load_task_data
    from tfc_cli.onnx_export import export_onnx
    from tfc_cli.recipe import parse_recipe

    tokenizer = AutoTokenizer.from_pretrained(FINETUNED)
    fp32 = export_onnx(AutoModelForSequenceClassification.from_pretrained(FINETUNED).eval(), tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "fp32.onnx").write_bytes(fp32)
        graphs = {"fp32": fp32}
        for i, (name, (per_channel, const_b_only)) in enumerate(SETTINGS.items()):
            quantize_dynamic(str(tmp / "fp32.onnx"), str(tmp / f"{i}.onnx"), weight_type=QuantType.QInt8,
                             per_channel=per_channel, op_types_to_quantize=["MatMul", "Gather"],
                             extra_options={"MatMulConstBOnly": const_b_only})
            graphs[name] = (tmp / f"{i}.onnx").read_bytes()
        data = load_task_data(parse_recipe(quantize_recipe(tmp, "dynamic-int8", "onnxruntime", 10)).task, seed=0,
                              hold_out_test=True)
    runners = {name: OrtRunner(graph, 2) for name, graph in graphs.items()}
    accuracy = {name: evaluate(r, tokenizer, data, 64, split="test", label=name)["accuracy"] for name, r in runners.items()}
    timed = time_interleaved(runners, bench_inputs(tokenizer, data.split("test")["text"][:64], 1, 64),
                             Protocol(threads=2, warmup=20, repeats=args.repeats))
    print("| setting | test accuracy | drop (pt) | p50 b1 ms | vs fp32 [95%] |\n|---|---:|---:|---:|---:|")
    for name in runners:
        r = ratio_interval(timed["fp32"]["times_ms"], timed[name]["times_ms"])
        print(f"| {name} | {accuracy[name]:.4f} | {(accuracy['fp32'] - accuracy[name]) * 100:.2f} | "
              f"{timed[name]['p50_ms']:.2f} | {r['ratio']:.2f}x [{r['low']:.2f}-{r['high']:.2f}] |")


if __name__ == "__main__":
    main()
