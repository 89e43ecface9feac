"""What ONNX Runtime's graph optimisations buy on the fine-tuned MiniLM-L6, fp32 and dynamic INT8, all measured now.

Variants of one exported graph, timed interleaved in one process (tfc's protocol):
- `none`: session graph optimisations off (ORT_DISABLE_ALL);
- `basic`: constant folding and redundant-node removal only (ORT_ENABLE_BASIC);
- `all`: ORT's default and tfc's (ORT_ENABLE_ALL: LayerNorm, GELU, MatMul+Add and other fusions at load time);
- `fused`: the offline transformer optimizer first (onnxruntime.transformers.optimizer: Attention, SkipLayerNorm,
  BiasGelu, EmbedLayerNorm fusions), then ORT_ENABLE_ALL;
and the same for dynamic INT8 (tfc's quantize stage; `fused` = fuse, then quantize). Each variant's logits are
checked against the unoptimised graph. Needs runs/rt-minilm-finetune (`tfc compress recipes/rt-minilm-finetune.yaml`).

    python scripts/bench_ort_fusions.py [--repeats 200] [--batch-size 1]
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import onnx

from tfc_cli.bench import Protocol, bench_inputs, time_interleaved
from tfc_cli.checkpoint import load
from tfc_cli.onnx_export import export_onnx
from tfc_cli.quant.onnx_int8 import OnnxInt8, has_vnni

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["A quietly devastating film that earns every one of its tears, and a few of its laughs too.",
         "The plot is thin, the jokes are stale, and the two hours feel like four."]


class Runner:
    def __init__(self, model: bytes, level, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch):
        return self.session.run(["logits"], {k: batch[k] for k in self.names})[0]


def fused(model: bytes, config) -> tuple[bytes, dict]:
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(onnx.load_from_string(model), model_type="bert", num_heads=config.num_attention_heads,
                               hidden_size=config.hidden_size, opt_level=0)
    if not any(o.domain == "com.microsoft" for o in optimized.model.opset_import):  # the fused ops live there
        optimized.model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    counts = collections.Counter(n.op_type for n in optimized.model.graph.node)
    wanted = ("Attention", "SkipLayerNormalization", "LayerNormalization", "BiasGelu", "FastGelu", "Gelu",
              "EmbedLayerNormalization")
    return optimized.model.SerializeToString(), {k: counts[k] for k in wanted if counts[k]}


def main() -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args()
    ckpt = load(ROOT / "runs" / "rt-minilm-finetune")
    fp32 = export_onnx(ckpt.model, ckpt.tokenizer)
    fp32_fused, fusions = fused(fp32, ckpt.config)
    print("offline fusions:", fusions)
    reduce_range = not has_vnni()
    int8 = OnnxInt8(fp32, "dynamic-int8", per_channel=True, reduce_range=reduce_range).quantize()
    int8_fused = OnnxInt8(fp32_fused, "dynamic-int8", per_channel=True, reduce_range=reduce_range).quantize()
    level = ort.GraphOptimizationLevel
    protocol = Protocol(args.batch_size, args.seq_len, None, 20, args.repeats).resolved()
    variants = {
        "fp32 none": (fp32, level.ORT_DISABLE_ALL), "fp32 basic": (fp32, level.ORT_ENABLE_BASIC),
        "fp32 all": (fp32, level.ORT_ENABLE_ALL), "fp32 fused": (fp32_fused, level.ORT_ENABLE_ALL),
        "int8 none": (int8, level.ORT_DISABLE_ALL), "int8 all": (int8, level.ORT_ENABLE_ALL),
        "int8 fused": (int8_fused, level.ORT_ENABLE_ALL),
    }
    runners = {name: Runner(model, lvl, protocol.threads) for name, (model, lvl) in variants.items()}
    inputs = bench_inputs(ckpt.tokenizer, TEXTS, args.batch_size, args.seq_len)
    reference = runners["fp32 none"](inputs)
    latency = time_interleaved(runners, inputs, protocol)
    print(f"\nMiniLM-L6 (fine-tuned), batch {args.batch_size}, seq {args.seq_len}, {protocol.threads} threads, "
          f"{args.repeats} timed calls each, interleaved\n")
    print("| variant | p50 ms | p95 ms | speedup vs fp32 none | vs fp32 all | max logit diff vs fp32 none |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runner in runners.items():
        p50 = latency[name]["p50_ms"]
        diff = float(np.abs(runner(inputs) - reference).max())
        print(f"| {name} | {p50:.2f} | {latency[name]['p95_ms']:.2f} | {latency['fp32 none']['p50_ms'] / p50:.2f}x | "
              f"{latency['fp32 all']['p50_ms'] / p50:.2f}x | {diff:.2g} |")


if __name__ == "__main__":
    main()
