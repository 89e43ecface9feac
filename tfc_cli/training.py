"""Devices and processes for every training stage, through accelerate.

`tfc compress` runs as one process, or as N under `accelerate launch --multi_gpu --num_processes N -m tfc_cli
compress recipe.yaml` (on CPU accelerate then uses gloo; `--multi_gpu` is accelerate's flag for any multi-process
launch). Every process holds the whole model and takes its slice of each global batch (a stage's `batch_size` is
the global batch); after each backward the gradients of every trained tensor (weights, gates, multipliers) are
averaged across processes, so all processes keep identical weights and the result equals a one-process run with
the same global batch up to floating-point noise. Only the main process writes anything. With `--mixed_precision
bf16` the forward passes and losses run under bf16 autocast; weights, gradients and optimiser state stay fp32.

The loop itself is here too (`Training.epoch`, `Training.step`, `BestEpoch`), for every training stage: a stage
says how a batch becomes a loss and which tensors an optimiser steps; the pass over the data, the NaN check, the
progress bar, the gradient averaging and clipping, and keeping the best epoch on validation are the same for all.
"""
from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable

import numpy as np
import torch

from . import progress
from .errors import TfcError


def process_index() -> int:
    """This process's rank under a multi-process launch (0 otherwise); readable before any training starts."""
    return int(os.environ.get("RANK", "0"))


def num_processes() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return process_index() == 0


def mixed_precision() -> str:
    """The launch's mixed precision (`accelerate launch --mixed_precision bf16`): 'no' or 'bf16'."""
    return os.environ.get("ACCELERATE_MIXED_PRECISION", "no")


class Training:
    """What a training loop asks for: the device, its slice of each batch, averaged gradients."""

    def __init__(self, batch_size: int):
        from accelerate import Accelerator, DataLoaderConfiguration

        if mixed_precision() not in ("no", "bf16"):  # fp16 needs loss scaling, which this loop does not do
            raise TfcError(f"mixed precision '{mixed_precision()}' is not supported for training; use bf16 (same range "
                           "as fp32, no loss scaling needed) or no")
        if batch_size % num_processes():
            raise TfcError(f"batch_size {batch_size} is the global batch: it must divide among {num_processes()} "
                           "processes")
        # split_batches: each global batch is cut among the processes, in the one-process order (without it each
        # process takes whole batches of its own)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                                       dataloader_config=DataLoaderConfiguration(split_batches=True))
        self.device = self.accelerator.device
        self.processes = self.accelerator.num_processes

    def loader(self, loader):
        """`loader` yielding this process's share of each global batch, on this process's device."""
        return self.accelerator.prepare_data_loader(loader) if self.processes > 1 else loader

    def backward(self, loss: torch.Tensor, params: list[torch.Tensor]) -> None:
        loss.backward()
        if self.processes == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.processes
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset: offset + g.numel()].view_as(p).clone()
            offset += g.numel()

    def step(self, loss: torch.Tensor, trained: list, optimizer, scheduler, clipped: list, max_grad_norm: float) -> None:
        """One optimisation step: averaged gradients of `trained`, only `clipped` clipped (CoFi never clips its
        gates or multipliers), then the optimiser and its schedule."""
        self.backward(loss, trained)
        torch.nn.utils.clip_grad_norm_(clipped, max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    def epoch(self, model, loader, loss_of: Callable, step: Callable, label: str, stage: str, at: str) -> float:
        """One pass over `loader` with `model` in train mode. `loss_of(batch)` returns (loss to optimise, loss to
        report, fields to show beside the bar); `step(loss)` optimises. Returns the epoch's mean reported loss over
        every process's share. `at` names the epoch in an error."""
        model.train()
        losses = []
        with progress.bar(label, len(loader)) as advance:
            for i, batch in enumerate(loader, 1):
                with self.accelerator.autocast():  # bf16 matmuls under `--mixed_precision bf16`; else a no-op
                    optimised, reported, shown = loss_of({k: v.to(self.device) for k, v in batch.items()})
                if not math.isfinite(optimised.item()):
                    raise TfcError(f"stage '{stage}': loss became {optimised.item()} at {at}, step {i}; "
                                   "try a lower learning_rate")
                step(optimised)
                losses.append(reported.item())
                advance(loss=float(np.mean(losses[-50:])), **shown)
        return self.mean(float(np.mean(losses)))

    def token_share(self, mask: torch.Tensor) -> float:
        """This process's tokens over the mean across processes: a per-token mean loss scaled by it averages to the
        global per-token mean, however padding falls between processes."""
        if self.processes == 1:
            return 1.0
        count = mask.sum().float().reshape(1)
        total = count.clone()
        torch.distributed.all_reduce(total)
        return float(count / (total / self.processes))

    def mean(self, value: float) -> float:
        """`value` (e.g. this process's mean loss) averaged over the processes."""
        if self.processes == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return float(t / self.processes)

    def close(self) -> None:
        self.accelerator.free_memory()


_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def adamw(named_parameters, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices only (not biases or norms), as in BERT fine-tuning."""
    named = list(named_parameters)
    return torch.optim.AdamW([
        {"params": [p for n, p in named if not n.endswith(_NO_DECAY)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n.endswith(_NO_DECAY)], "weight_decay": 0.0}], lr=learning_rate)


class BestEpoch:
    """The model state of the epoch that scored best on validation (a `tasks.Score`); `restore` puts it back."""

    def __init__(self, model, epoch: int | None = None, score=None):
        self.epoch, self.score = epoch, score
        self.state = copy.deepcopy(model.state_dict()) if score is not None else None

    def offer(self, epoch: int, score, model) -> None:
        if self.score is None or score.better_than(self.score):
            self.epoch, self.score, self.state = epoch, score, copy.deepcopy(model.state_dict())

    def restore(self, model) -> None:
        model.load_state_dict(self.state)
