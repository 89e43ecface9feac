"""`method: qat-int8` (onnxruntime): fine-tune with what static INT8 quantizes fake-quantized (quant/qat.py), keep
the best epoch on validation, then convert with static-int8's calibration. The fine-tuning learns from the labels,
or with `qat_distill` from the float model itself: its logits and every layer's hidden states (TernaryBERT's
losses, Zhang et al. 2020, https://arxiv.org/abs/2009.12812), the model entering the stage being the one INT8 should
match."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Literal

from ...arch import BY_MODEL_TYPE, family_for, known_types
from ...distill import DistillRun
from ...quant.qat import calibrate_fake_quant, fake_quantized
from ...schema import param
from ...tasks import task_of
from ...training import Training
from ..base import StageContext
from ..distill import DistillStageConfig
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
    # On MiniLM-L6 (docs/BENCHMARKS.md, "QAT"), one epoch on the labels lost 1.49 pt with moving-average ranges and
    # 1.10 with calibrated ones, both worse than converting the float weights untrained (0.86): so the model before
    # training now competes with every epoch on validation. The distilled epoch scored below that model and was not
    # kept; distillation's own gain is unmeasured.
    qat_ranges: Literal["moving-average", "calibration"] = param(
        "calibration", help="the fake-quantized inputs' ranges: a moving average of each training batch's min and "
        "max, or fixed to the min and max over the calibration examples (as the converted graph's)")
    qat_distill: bool = param(True, help="learn from the float model's logits and hidden states instead of the labels")
    # Static INT8 also rounds both attention MatMuls' inputs and the embedding tables, which training with the
    # Linear layers alone never sees. On MiniLM-L6 (scripts/explore_qat_simulation.py) both fake-quantized models
    # land within 4 validation examples of the converted graph (0.8188 all, 0.8165 Linear only, graph 0.8157).
    qat_fake_quant: Literal["all", "linear"] = param(
        "all", help="what training rounds: everything static INT8 quantizes (Linear layers, attention MatMuls, "
        "embedding tables) or the Linear layers only")


class QatInt8(StaticInt8):
    method = "qat-int8"
    Config = QatInt8Config
    help = "quantization-aware fine-tuning (fake-quantized as static INT8 rounds), then static INT8 (onnxruntime)"

    def validate(self, info, task: str) -> list[str]:
        problems = super().validate(info, task)
        if info.model_type not in BY_MODEL_TYPE:
            problems.append(f"qat-int8 does not know model type '{info.model_type}' (known: {known_types()})")
        return problems

    def selects_on_validation(self) -> bool:
        return True

    def plan(self, info) -> str:
        c = self.config
        target = "the float model's logits and hidden states" if c.qat_distill else "the labels"
        ranges = "fixed by calibration" if c.qat_ranges == "calibration" else "a moving average"
        return (f"qat-int8 on onnxruntime: fine-tune {c.qat_epochs} epoch(s) at lr {c.qat_learning_rate:g} on {target} "
                f"with {'everything static INT8 quantizes' if c.qat_fake_quant == 'all' else 'the Linear layers'} "
                f"fake-quantized (input ranges {ranges}), then static INT8 calibrated on "
                f"{c.calibration_samples} examples")

    def _calibration(self, state, ctx: StageContext, changes: dict, summary: dict):
        summary["qat"] = self._train_quantization_aware(state, ctx)
        return super()._calibration(state, ctx, changes, summary)

    def _train_quantization_aware(self, state, ctx: StageContext) -> dict:
        """Fine-tune fake-quantized (the best epoch on validation is kept, the model before training competing as
        epoch 0); the fake quantization is removed on leaving."""
        c = self.config
        teacher = copy.deepcopy(state.model).eval() if c.qat_distill else None
        with fake_quantized(state.model, family_for(state.model), linear_only=c.qat_fake_quant == "linear",
                            reduce_range=c.reduce_range()) as wrapped:
            if c.qat_ranges == "calibration":
                calibrate_fake_quant(state.model, self._calibration_batches(state, ctx))
            if teacher is None:
                trainer = Finetune(FinetuneConfig(epochs=c.qat_epochs, learning_rate=c.qat_learning_rate,
                                                  batch_size=c.qat_batch_size, warmup_ratio=0.0))
                task = task_of(ctx.recipe)
                summary = trainer.apply(state, ctx, initial=task.validate(state.model, state, ctx,
                                                                          "validation, before training")).summary
            else:
                summary = self._distill(state, ctx, teacher)
        return wrapped | {"ranges": c.qat_ranges, "distill": c.qat_distill} | summary

    def _distill(self, state, ctx: StageContext, teacher) -> dict:
        """The fake-quantized model trained to reproduce `teacher` (the float model): softened logits (T=1) and the
        hidden states of every layer, no labels."""
        c = self.config
        task = task_of(ctx.recipe)
        config = dataclasses.replace(DistillStageConfig(), epochs=c.qat_epochs, learning_rate=c.qat_learning_rate,
                                     batch_size=c.qat_batch_size, warmup_ratio=0.0, temperature=1.0, alpha=1.0,
                                     hidden_weight=1.0)
        layers = len(family_for(teacher).layers())
        run = DistillRun(config, state.model, teacher, [(i, i) for i in range(layers)], False,
                         Training(c.qat_batch_size), stage="quantize")
        loader = run.training.loader(task.train_loader(state, ctx, c.qat_batch_size, ctx.seed))
        best_epoch, best_score, history = run.train(loader, lambda label: task.validate(run.student, state, ctx, label))
        run.close()
        state.model = run.student.cpu().eval()
        return {"best_epoch": best_epoch, best_score.name.replace(" ", "_"): best_score.value, "epochs": history}
