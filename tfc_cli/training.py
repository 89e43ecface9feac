"""Devices and processes for every training stage, through accelerate.

`tfc compress` runs as one process, or as N under `accelerate launch --multi_gpu --num_processes N -m tfc_cli
compress recipe.yaml` (on CPU accelerate then uses gloo; `--multi_gpu` is accelerate's flag for any multi-process
launch). Every process holds the whole model and takes its slice of each global batch (a stage's `batch_size` is
the global batch); after each backward the gradients of every trained tensor (weights, gates, multipliers) are
averaged across processes, so all processes keep identical weights and the result equals a one-process run with
the same global batch up to floating-point noise. Only the main process writes anything.
"""
from __future__ import annotations

import os

import torch

from .errors import TfcError


def process_index() -> int:
    """This process's rank under a multi-process launch (0 otherwise); readable before any training starts."""
    return int(os.environ.get("RANK", "0"))


def num_processes() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return process_index() == 0


class Training:
    """What a training loop asks for: the device, its slice of each batch, averaged gradients."""

    def __init__(self, batch_size: int):
        from accelerate import Accelerator, DataLoaderConfiguration

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
