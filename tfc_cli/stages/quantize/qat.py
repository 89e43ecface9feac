"""`method: qat-int8` (onnxruntime): fine-tune with the encoder's Linear layers fake-quantized (quant/qat.py), keep
the best epoch on validation, then convert with static-int8's calibration."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...arch import BY_MODEL_TYPE, family_for, known_types
from ...quant.qat import insert_fake_quant, remove_fake_quant
from ...schema import param
from ..base import StageContext
from ..finetune import Finetune, FinetuneConfig
from .method import BACKEND_HELP, METHOD_HELP
from .static import StaticInt8, StaticInt8Config


@dataclass(frozen=True)
class QatInt8Config(StaticInt8Config):
    method: Literal["qat-int8"] = param("qat-int8", help=METHOD_HELP)
    backend: Literal["onnxruntime"] = param("onnxruntime", help=BACKEND_HELP)
    qat_epochs: int = param(1, help="fake-quantized fine-tuning epochs", min=1)
    qat_learning_rate: float = param(1e-5, help="learning rate of the fake-quantized fine-tuning", min=0,
                                     min_exclusive=True)
    qat_batch_size: int = param(32, help="batch size of the fake-quantized fine-tuning", min=1)


class QatInt8(StaticInt8):
    method = "qat-int8"
    Config = QatInt8Config
    help = "quantization-aware fine-tuning (fake-quantized Linear layers), then static INT8 (onnxruntime)"

    def validate(self, info, task: str) -> list[str]:
        problems = super().validate(info, task)
        if info.model_type not in BY_MODEL_TYPE:
            problems.append(f"qat-int8 does not know model type '{info.model_type}' (known: {known_types()})")
        return problems

    def selects_on_validation(self) -> bool:
        return True

    def plan(self, info) -> str:
        c = self.config
        return (f"qat-int8 on onnxruntime: fine-tune {c.qat_epochs} epoch(s) at lr {c.qat_learning_rate:g} with "
                f"fake-quantized Linear layers, then static INT8 calibrated on {c.calibration_samples} examples")

    def _calibration(self, state, ctx: StageContext, changes: dict, summary: dict):
        summary["qat"] = self._train_quantization_aware(state, ctx)
        return super()._calibration(state, ctx, changes, summary)

    def _train_quantization_aware(self, state, ctx: StageContext) -> dict:
        """Fine-tune with fake-quantized Linear layers (the best epoch on validation is kept), then unwrap them."""
        c = self.config
        wrapped = insert_fake_quant(family_for(state.model).layers())
        trainer = Finetune(FinetuneConfig(epochs=c.qat_epochs, learning_rate=c.qat_learning_rate,
                                          batch_size=c.qat_batch_size, warmup_ratio=0.0))
        result = trainer.apply(state, ctx)
        remove_fake_quant(family_for(state.model).layers())
        return {"fake_quantized_linear": wrapped} | result.summary
