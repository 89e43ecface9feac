"""`method: weight-only` (onnxruntime, causal LMs): `bits` 4 or 8 in groups of `group_size`, activations float; the
decoder is exported with its KV cache and its weights quantized (quant/weight_only.py). `algorithm: gptq | awq`
first round the Linears in torch on `calibration_samples` blocks of the training text (quant/calibrated.py)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

from ...schema import param
from ...transforms import transform
from ..base import StageContext, StageResult
from .method import BACKEND_HELP, METHOD_HELP, MethodConfig, QuantizeMethod


CALIBRATED = ("gptq", "awq")


@dataclass(frozen=True)
class WeightOnlyConfig(MethodConfig):
    method: Literal["weight-only"] = param("weight-only", help=METHOD_HELP)
    backend: Literal["onnxruntime"] = param("onnxruntime", help=BACKEND_HELP)
    bits: Literal[4, 8] = param(4, help="weight bits")
    group_size: Literal[16, 32, 64, 128, 256] = param(
        32, help="weights sharing one scale; with compute int8 also the block the activation is rounded in. int8 in "
        "groups of 128 decodes 1.13-1.17x faster than 32 and, by rtn, loses more (SmolLM2-135M +1.3% perplexity vs "
        "+0.6%); by awq +0.1%")
    algorithm: Literal["rtn", "hqq", "gptq", "awq"] = param(
        "rtn", help="rounding: rtn (nearest level, no data), gptq (rounding errors compensated column by column on "
        "calibration text), awq (activation-aware input scaling and clipping on calibration text; at 8 bits with "
        "compute int8 the scales also weigh the kernel's activation rounding) - all three run integer kernels; hqq "
        "(int4: float zero points fitted per group; slower kernels)")
    compute: Literal["int8", "float"] = param(
        "int8", help="rtn, gptq, awq matmul arithmetic: int8 (activations quantized per group at run time; fastest) "
        "or float (weights dequantized; slower, no activation rounding)")
    calibration_samples: int = param(32, help="gptq, awq: blocks of task.max_length tokens of the training text the "
                                     "Linears' inputs are measured on", min=1)
    act_order: bool = param(False, help="gptq: round the inputs with the largest activations first (each group's "
                            "grid fixed before, so the fast kernels still run it)")


class WeightOnly(QuantizeMethod):
    method = "weight-only"
    Config = WeightOnlyConfig
    help = "int4/int8 weights in groups, float activations, for causal LMs with their KV cache (onnxruntime)"
    tasks = ("causal-lm",)

    def produces(self, representation: str) -> str:
        return "onnx"

    def validate(self, info, task: str) -> list[str]:
        problems = super().validate(info, task)
        if self.config.algorithm == "hqq" and self.config.bits != 4:
            problems.append("algorithm 'hqq' quantizes to 4 bits only (set bits: 4, or algorithm: rtn)")
        return problems

    def needs_train(self) -> bool:
        return self.config.algorithm in CALIBRATED

    def applied_options(self) -> tuple[str, ...]:
        c = self.config
        names = ("method", "backend", "bits", "group_size", "algorithm")
        names += ("compute",) if c.algorithm != "hqq" else ()
        names += ("calibration_samples",) if c.algorithm in CALIBRATED else ()
        return names + (("act_order",) if c.algorithm == "gptq" else ())

    def plan(self, info) -> str:
        c = self.config
        zero_bits = {"hqq": 32, "gptq": c.bits, "awq": c.bits}.get(c.algorithm, 0)
        per_weight = c.bits + (32 + zero_bits) / c.group_size  # fp32 scale (+ zero point)
        calibrated = (f"round the attention, FFN and head Linears by {c.algorithm} on {c.calibration_samples} "
                      "training blocks, layer by layer, then " if c.algorithm in CALIBRATED else "")
        return (f"weight-only int{c.bits} ({c.algorithm}) on onnxruntime: {calibrated}export the decoder with its KV "
                f"cache, then store every Linear weight (LM head included) and the embeddings in int{c.bits}, one "
                f"scale per {c.group_size} weights: about {per_weight:.2f} bits per weight instead of 32")

    def apply(self, state, ctx: StageContext) -> StageResult:
        c = self.config
        # imported here: onnx (through ml_dtypes 0.7) adds 1.5 s to every tfc start, validate included
        from ...onnx_export import export_decoder_onnx
        from ...quant.weight_only import weight_only_quantize

        head, table = state.model.get_output_embeddings(), state.model.get_input_embeddings()
        tied = head is not None and table is not None and head.weight is table.weight  # before calibration unties it
        codes, calibration = self._calibrated_codes(state, ctx) if c.algorithm in CALIBRATED else (None, {})
        state.onnx, record = weight_only_quantize(export_decoder_onnx(state.model, state.tokenizer), c.bits, c.group_size,
                                                  c.algorithm, integer_compute=c.compute == "int8", codes=codes,
                                                  tied_head=tied)
        record |= calibration
        state.model = None  # the ONNX graph is now the model
        shared = record["embeddings"].startswith("the LM head")
        zero = {"hqq": "a float zero point", "rtn": "symmetric"}.get(
            c.algorithm, "an integer zero point" + ("" if shared else " (embeddings: symmetric)"))
        changes = {"method": self.method, "backend": "onnxruntime", "bits": c.bits, "group_size": c.group_size,
                   "weights": f"int{c.bits}, one scale per {c.group_size} weights, {zero}", "compute": c.compute,
                   "activations": "float" + (" (int8 per group inside each matmul)" if c.compute == "int8" else "")} | record
        return StageResult(state, summary=record, transforms=[transform("quantize", **changes)])

    def _calibrated_codes(self, state, ctx):
        from ...quant.calibrated import calibrated_codes
        from ...tasks import task_of

        c = self.config
        loader = task_of(ctx.recipe).train_loader(state, ctx, 8, ctx.seed)
        batches = list(itertools.islice(loader, -(-c.calibration_samples // 8)))
        codes, record = calibrated_codes(state.model, batches, c.algorithm, c.bits, c.group_size, c.act_order,
                                         integer_compute=c.compute == "int8")
        return codes, record | {"calibration": f"{sum(len(b['input_ids']) for b in batches)} blocks of the training text"}
