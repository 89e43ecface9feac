"""What does static INT8 on ONNX Runtime round, and does QAT's fake-quantized model see the same? The fine-tuned
MiniLM-L6 is converted to static INT8 (minmax calibration on 256 training examples, per-channel weights, QDQ) twice:
with onnxruntime's own QDQ placement and with tfc's (quant/onnx_int8.py: only the quantized ops' inputs rounded).
The float model is then fake-quantized (quant/qat.py) with the Linear layers only, or with everything tfc's graph
rounds, its ranges calibrated on the same batches. On the validation split: each model's accuracy, and how far
its logits are from tfc's INT8 graph. Rounding is chaotic at this depth: a 1e-6 nudge to the LayerNorm biases of
the fake-quantized model moves its logits too (the last line), the floor under any logit comparison.

    python scripts/explore_qat_simulation.py
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tfc_cli  # noqa: E402
from tfc_cli.arch import family_for  # noqa: E402
from tfc_cli.data import load_task_data  # noqa: E402
from tfc_cli.onnx_export import export_onnx, input_names  # noqa: E402
from tfc_cli.ort_session import ort_session  # noqa: E402
from tfc_cli.quant.onnx_int8 import OnnxInt8, calibration_batches  # noqa: E402
from tfc_cli.quant.qat import calibrate_fake_quant, fake_quantized  # noqa: E402
from tfc_cli.recipe import parse_recipe  # noqa: E402

TEACHER = ROOT / "runs" / "rt-minilm-finetune"


def main() -> None:
    torch.set_num_threads(2)
    ckpt = tfc_cli.load(TEACHER)
    model = ckpt.model.eval()
    data = load_task_data(parse_recipe(ROOT / "recipes" / "rt-minilm-finetune.yaml").task)
    train, validation = data.split("train"), data.split("validation")
    rows = sorted(random.Random(0).sample(range(len(train)), 256))
    names = input_names(ckpt.tokenizer, model)
    calibration = calibration_batches(ckpt.tokenizer, [train["text"][i] for i in rows], None, 64, names)
    held_out = calibration_batches(ckpt.tokenizer, validation["text"], None, 64, names)
    labels = np.asarray(validation["label"])
    fp32 = export_onnx(model, ckpt.tokenizer)

    def int8_logits(ort_default: bool) -> np.ndarray:
        session = ort_session(OnnxInt8(fp32, "static-int8", per_channel=True, reduce_range=False, batches=calibration,
                                       ort_default_qdq=ort_default).quantize(), 2)
        return np.concatenate([session.run(["logits"], b)[0] for b in held_out])

    def logits() -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([model(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.numpy()
                                   for b in held_out])

    rows_out = {"static INT8, onnxruntime's QDQ placement": int8_logits(True)}
    reference = rows_out["static INT8, tfc's graph (the reference)"] = int8_logits(False)
    rows_out["float (torch)"] = logits()
    for name, linear_only in (("fake-quantized Linear layers only", True), ("fake-quantized all tfc's graph rounds", False)):
        with fake_quantized(model, family_for(model), linear_only=linear_only):
            calibrate_fake_quant(model, calibration)
            rows_out[name] = logits()
            if not linear_only:
                torch.manual_seed(0)
                with torch.no_grad():
                    for key, p in model.named_parameters():
                        if "LayerNorm.bias" in key:
                            p.add_(1e-6 * torch.randn_like(p))
                floor = np.abs(logits() - rows_out[name]).mean()
    print(f"validation, {len(labels)} examples\n")
    print("| model | accuracy | mean abs logit diff to tfc's INT8 graph | predictions differing |")
    print("|---|---:|---:|---:|")
    for name, out in rows_out.items():
        print(f"| {name} | {(out.argmax(1) == labels).mean():.4f} | {np.abs(out - reference).mean():.4f} | "
              f"{int((out.argmax(1) != reference.argmax(1)).sum())} |")
    print(f"\nfake-quantized all vs itself with LayerNorm biases nudged by 1e-6: mean abs logit diff {floor:.4f}")


if __name__ == "__main__":
    main()
