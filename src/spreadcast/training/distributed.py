"""Data-parallel training across processes (torchrun + DistributedDataParallel).

A stage whose `train.processes` is above 1 re-launches itself under `torch.distributed.run`
with that many processes. Each process takes its share of every global batch, gradients are
averaged by DistributedDataParallel (NCCL on GPUs, gloo on CPU), and every process holds the
same weights after each step. Validation is computed identically by all of them, so they stop
on the same epoch; only rank 0 prints, logs and writes.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from spreadcast.errors import TrainingError


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, rows):
        """This process's share of a global batch."""
        return rows[self.rank::self.world] if self.active else rows

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean over processes (for logging)."""
        if not self.active:
            return values
        values = values.clone()
        dist.all_reduce(values)
        return values / self.world


SINGLE = Context()


def under_launcher() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def relaunch(processes: int) -> int | None:
    """Run this script again under torchrun with `processes` processes; returns its exit code.

    None when there is nothing to do: one process asked for, or already under a launcher.
    """
    if processes <= 1 or under_launcher():
        return None
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            sys.argv[0], *sys.argv[1:]]
    print(f"launching {processes} processes: torchrun --standalone --nproc_per_node={processes} "
          f"{' '.join(sys.argv)}", flush=True)
    return subprocess.run(argv).returncode


def setup() -> tuple[Context, torch.device]:
    """Join the process group the launcher describes (or run alone); returns the context and device."""
    if not under_launcher():
        return SINGLE, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    local = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Context(rank=dist.get_rank(), world=dist.get_world_size()), device


def teardown(ctx: Context) -> None:
    if ctx.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, ctx: Context, device: torch.device) -> torch.nn.Module:
    """The module gradients flow through: `model` alone, or a DistributedDataParallel wrapper
    over the parameters that currently require gradients (rebuild it when that set changes)."""
    if not ctx.active:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def run(processes: int, body: Callable[[Context, torch.device], None]) -> None:
    """A stage's training body, in this process or in `processes` torchrun workers."""
    code = relaunch(processes)
    if code is not None:                       # this process only launched the workers
        if code:
            raise TrainingError(f"train.processes = {processes}: torchrun exited with status {code}")
        return
    ctx, device = setup()
    try:
        body(ctx, device)
    finally:
        teardown(ctx)
