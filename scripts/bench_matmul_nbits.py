"""One weight-only matmul at a time, as a decode step runs it (one token, batch 1): MatMulNBits at int8 and int4
in groups of 32 and 128 (tfc's weight-only quantizer, integer kernels), timed interleaved, with the weight bytes
read per second (codes only, scales not counted).

    python scripts/bench_matmul_nbits.py [--shapes 896x151936,896x4864,4864x896,896x896] [--repeats 300]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tfc_cli.ort_session import ort_session  # noqa: E402
from tfc_cli.quant.weight_only import weight_only_quantize  # noqa: E402

SETTINGS = ((8, 32), (8, 128), (4, 32), (4, 128))  # (bits, group size)


def matmul_graph(k: int, n: int, rng: np.random.Generator):
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array((rng.standard_normal((k, n)) * 0.02).astype(np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"], name="matmul")], "one_matmul",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, n])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", default="896x151936,896x4864,4864x896,896x896",
                        help="K x N (input x output features); the defaults are Qwen2.5-0.5B's head, FFN up, down, q")
    parser.add_argument("--repeats", type=int, default=300, help="timed calls per setting (a tenth for N > 100k)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"| K x N | {' | '.join(f'int{b} g{g} ms (GB/s)' for b, g in SETTINGS)} |")
    print("|---|" + "---:|" * len(SETTINGS))
    for shape in args.shapes.split(","):
        k, n = map(int, shape.split("x"))
        sessions = {(b, g): ort_session(weight_only_quantize(matmul_graph(k, n, rng), b, g)[0], args.threads)
                    for b, g in SETTINGS}
        x = {"x": rng.standard_normal((1, 1, k)).astype(np.float32)}
        for session in sessions.values():
            for _ in range(20):
                session.run(None, x)
        times: dict = {s: [] for s in sessions}
        for _ in range(args.repeats // 10 if n > 100_000 else args.repeats):
            for setting, session in sessions.items():
                start = time.perf_counter()
                session.run(None, x)
                times[setting].append(time.perf_counter() - start)
        cells = []
        for (bits, group), t in times.items():
            median = statistics.median(t)
            cells.append(f"{median * 1e3:.3f} ({k * n * bits / 8 / median / 1e9:.1f})")
        print(f"| {shape} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
