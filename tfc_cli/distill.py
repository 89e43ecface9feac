"""Distillation for every training stage. The losses: logits with a temperature (per example, or per token of an
LM); hidden states of chosen teacher layers, either fixed pairs or each matched to the student layer closest to it
at this step (after a learned linear map, so widths may differ), keeping the matching in layer order (CoFi's
layer-wise distillation); MiniLM-v2's attention relations. `DistillRun` trains a student against a teacher with
them (the distill stage, and the recovery after a one-shot prune)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import progress
from .arch import family_for
from .errors import TfcError
from .tasks import masked_logits
from .training import BestEpoch, Training, adamw


def default_teacher_layers(num_layers: int) -> list[int]:
    """About four evenly spaced teacher layers, ending at the last (CoFi used 3, 6, 9, 12 of BERT-base's 12)."""
    step = max(1, round(num_layers / 4))
    return [i for i in range(num_layers) if (i + 1) % step == 0]


class LayerCapture:
    """Runs a model and returns its logits with every layer's output hidden states (B, T, D)."""

    def __init__(self, model: nn.Module, layers: list[nn.Module]):
        self.model, self._outputs, self._recording = model, [], False
        self._handles = [layer.register_forward_hook(self._hook) for layer in layers]

    def _hook(self, _module, _inputs, output):
        if self._recording:  # other forward passes (evaluation) are not collected
            self._outputs.append(output[0] if isinstance(output, tuple) else output)

    def __call__(self, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._outputs, self._recording = [], True
        try:
            logits = self.model(**batch).logits
        finally:
            self._recording = False
        return logits, self._outputs

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def logit_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.kl_div(F.log_softmax(student / temperature, -1), F.softmax(teacher / temperature, -1),
                    reduction="batchmean") * temperature ** 2


def hidden_error(mapped: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                 standardize: bool = False) -> torch.Tensor:
    """Mean squared error over real tokens and hidden dims of one student layer (already mapped to the teacher's
    width) against one teacher layer.

    `standardize` divides each hidden dim's squared error by the teacher's mean square in that dim: a pre-norm
    decoder's residual stream is not normalised and a few dims carry values in the hundreds (SmolLM2's plain MSE
    was about 8000 at the first epoch, drowning the logit loss), so the error is measured relative to each dim's
    scale there. Post-norm encoders' hidden states are LayerNorm outputs and use the plain MSE, as CoFi did."""
    weights = mask[..., None].to(mapped.dtype)  # (B, T, 1): padding does not count
    squared = ((mapped - teacher) ** 2) * weights
    if standardize:
        scale = ((teacher.detach() ** 2) * weights).sum((0, 1)) / weights.sum() + 1e-6  # (D,)
        squared = squared / scale
    return squared.sum() / (weights.sum() * teacher.shape[-1])


def layer_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], teacher_layers: list[int],
               transform: nn.Linear, mask: torch.Tensor, alive: list[bool] | None = None,
               standardize: bool = False) -> tuple[torch.Tensor, list[int]]:
    """Sum over chosen teacher layers of `hidden_error(transform(student layer), teacher layer)`.

    Teacher layers are matched from the last down: each to the closest student layer below the previous match
    (and, during pruning, whose attention is still alive). Returns the loss and the matched student layers.
    """
    mapped = [transform(s) for s in student]
    losses = torch.stack([torch.stack([hidden_error(m, teacher[t], mask, standardize) for m in mapped])
                          for t in teacher_layers])  # (len(teacher_layers), student layers)
    matched, upper = [], len(student)
    for row in reversed(range(len(teacher_layers))):
        order = losses[row].detach().argsort().tolist()
        choice = next((j for j in order if j < upper and (alive is None or alive[j])), min(upper, len(student) - 1))
        matched.append(choice)
        upper = choice
    matched.reverse()
    return losses[torch.arange(len(teacher_layers)), torch.tensor(matched)].sum(), matched


class ProjectionCapture:
    """Records the outputs of one layer's q, k and v projections (B, T, width) on each forward pass."""

    def __init__(self, linears: tuple[nn.Linear, nn.Linear, nn.Linear]):
        self.outputs: list[torch.Tensor] = []
        self._handles = [m.register_forward_hook(self._hook) for m in linears]

    def _hook(self, _module, _inputs, output):
        self.outputs = self.outputs[-2:] + [output]  # q, k, v of the last pass (evaluation passes run too)

    def take(self) -> list[torch.Tensor]:
        """The q, k, v of the last forward pass."""
        taken, self.outputs = self.outputs, []
        return taken

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def _relations(x: torch.Tensor, heads: int, key_mask: torch.Tensor) -> torch.Tensor:
    """Log of softmax(x_h x_h^T / sqrt(d)) per relation head h: (B, heads, T, T); keys outside `key_mask`
    (B, T or B, T, T) get no weight."""
    b, t, width = x.shape
    if width % heads:
        raise TfcError(f"attention relations: width {width} does not split into {heads} relation heads")
    x = x.reshape(b, t, heads, width // heads).transpose(1, 2)
    scores = x @ x.transpose(-1, -2) / (width // heads) ** 0.5
    return F.log_softmax(scores.masked_fill(~key_mask[:, None], torch.finfo(scores.dtype).min), -1)


def relation_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor,
                  heads: int, causal: bool = False) -> torch.Tensor:
    """MiniLM-v2's self-attention relation loss (Wang et al., 2021, https://arxiv.org/abs/2012.15828): for each of
    q, k and v, KL(teacher || student) between the T x T relations of each of `heads` relation heads, over real
    query tokens. The projections are split into the same number of relation heads in both models, so the
    student's head count and width may differ from the teacher's. `causal`: a decoder's token relates only to the
    tokens before it."""
    length = mask.shape[1]
    key_mask = mask.bool()[:, None, :].expand(-1, length, -1)  # (B, query, key)
    if causal:
        key_mask = key_mask & torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    rows = mask[:, None, :, None].to(student[0].dtype)  # real query tokens
    total = student[0].new_zeros(())
    for s, t in zip(student, teacher):
        log_s, log_t = _relations(s, heads, key_mask), _relations(t.detach(), heads, key_mask)
        kl = (log_t.exp() * (log_t - log_s)).masked_fill(~key_mask[:, None], 0).sum(-1, keepdim=True)
        total = total + (kl * rows).sum() / (rows.sum() * heads)
    return total / len(student)


class DistillRun:
    """A student trained against a teacher: the hooks that read their layers, the loss, and the loop keeping the
    epoch best on validation. `config` has the distill stage's training and loss fields; `pairs` are the
    (student layer, teacher layer) hints; `stage` names it in progress lines and errors."""

    def __init__(self, config, student, teacher, pairs, lm: bool, training: Training, stage: str = "distill"):
        c = self.config = config
        self.training, self.lm, self.pairs, self.stage = training, lm, pairs, stage
        device = training.device
        self.student, self.teacher = student.to(device), teacher.to(device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        s_family, t_family = family_for(self.student), family_for(self.teacher)
        self.standardize = t_family.pre_norm  # see distill.hidden_error
        s_hidden, t_hidden = s_family.hidden(), t_family.hidden()
        # one learned map from the student's width to the teacher's (TinyBERT's W_h); none at equal widths
        self.projection = nn.Identity() if s_hidden == t_hidden else nn.Linear(s_hidden, t_hidden).to(device)
        self.run_student = LayerCapture(self.student, s_family.layers())
        self.run_teacher = LayerCapture(self.teacher, t_family.layers())
        self.relations = None
        if c.attention_weight > 0 and pairs:
            s_layer, t_layer = pairs[-1]
            s_attn = s_family.attention_linears(s_family.layers()[s_layer])
            t_attn = t_family.attention_linears(t_family.layers()[t_layer])
            if s_attn is None or t_attn is None:
                raise TfcError(f"stage '{self.stage}': attention relations of student layer {s_layer} and teacher layer "
                               f"{t_layer}, but one has no attention sublayer")
            self.relation_heads = c.relation_heads or t_family.dims().groups[t_layer]
            self.relations = (ProjectionCapture(s_attn[:3]), ProjectionCapture(t_attn[:3]))

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        c, training = self.config, self.training
        labels = batch.pop("labels", None)
        mask = batch["attention_mask"]
        uses_teacher = c.alpha > 0 or (c.hidden_weight and self.pairs) or self.relations
        if uses_teacher:  # hard labels alone (alpha 0, no hints) are plain fine-tuning: the teacher is not run
            with torch.no_grad():
                t_logits, t_hidden = self.run_teacher(batch)
                t_qkv = self.relations[1].take() if self.relations else None
        s_logits, s_hidden = self.run_student(batch)
        share = training.token_share(mask)
        parts = {}
        if c.alpha > 0:
            parts["soft"] = logit_loss(masked_logits(s_logits, mask), masked_logits(t_logits, mask),
                                       c.temperature) * (share if self.lm else 1.0)
        if c.alpha < 1:
            if self.lm:  # next-token cross-entropy over real tokens
                real = mask[:, 1:].bool()
                parts["hard"] = F.cross_entropy(s_logits[:, :-1][real], batch["input_ids"][:, 1:][real]) * share
            else:
                parts["hard"] = F.cross_entropy(s_logits, labels)
        if c.hidden_weight and self.pairs:
            parts["hidden"] = sum(hidden_error(self.projection(s_hidden[s]), t_hidden[t], mask, self.standardize)
                                  for s, t in self.pairs) * share
        if self.relations:
            parts["relation"] = relation_loss(self.relations[0].take(), t_qkv, mask, self.relation_heads,
                                              causal=self.lm) * share
        weights = {"soft": c.alpha, "hard": 1 - c.alpha, "hidden": c.hidden_weight, "relation": c.attention_weight}
        total = sum(weights[k] * v for k, v in parts.items())
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def train(self, loader, validate, initial=None, after_step=None, eligible=None) -> tuple[int, object, list[dict]]:
        """`epochs` of distillation; returns the best epoch (0: the student as built, scored `initial` when the
        caller has scored it), its score and the history. `after_step()` runs after each optimisation step;
        `eligible()`, when given, says whether the student may be kept as it is now (the student as built may not:
        a gradual sparsity schedule keeps only epochs at its final sparsity)."""
        from transformers import get_linear_schedule_with_warmup

        c, training = self.config, self.training
        history = []
        if eligible is not None:
            best = BestEpoch(self.student)
        else:
            if initial is None:
                initial = validate("validation, student as built")
                progress.info(f"  student as built: {initial}")
            best = BestEpoch(self.student, epoch=0, score=initial)
        named = list(self.student.named_parameters()) + [(f"projection.{n}", p)
                                                         for n, p in self.projection.named_parameters()]
        params = [p for _, p in named]
        optimizer = adamw(named, c.learning_rate, c.weight_decay)
        steps = c.epochs * len(loader)
        scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(c.warmup_ratio * steps), steps)

        def loss_of(batch):
            total, parts = self.loss(batch)
            return total, total, {k: round(v, 4) for k, v in parts.items()}

        def step(loss):
            training.step(loss, params, optimizer, scheduler, params, c.max_grad_norm)
            if after_step is not None:
                after_step()

        for epoch in range(1, c.epochs + 1):
            loss = training.epoch(self.student, loader, loss_of, step, f"{self.stage} epoch {epoch}/{c.epochs}", self.stage,
                                  at=f"epoch {epoch}")
            val = validate(f"validation, epoch {epoch}")
            history.append({"epoch": epoch, "distill_loss": loss, "validation": {val.name: val.value}})
            progress.info(f"  epoch {epoch}: distill loss {loss:.4f}, {val}")
            if eligible is None or eligible():
                best.offer(epoch, val, self.student)
        best.restore(self.student)
        return best.epoch, best.score, history

    def close(self) -> None:
        self.run_student.close()
        self.run_teacher.close()
        for capture in self.relations or ():
            capture.close()
        self.training.close()
