"""Training under torch DDP: which process this is, its shard of a batch, wrapped networks.

`nodeflow run --nproc N` starts N processes through torch.distributed.run (torchrun), which
sets RANK, WORLD_SIZE and the rendezvous; the CLI joins the process group (`join`). The one
training loop (`loop.fit`) then reads every batch of `world_size x batch_size` pairs and
trains each process on its slice of it, with the networks wrapped in
DistributedDataParallel so their gradients are averaged: N processes with batch b step as
one process with batch N x b. Only rank 0 writes checkpoints, samples, cache entries and
outputs; the others read its checkpoint through a broadcast.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from nodeflow.training.datasets import PairBatch


def world_size() -> int:
    """How many processes train together (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes (checkpoints, samples, outputs): rank 0."""
    return rank() == 0


def active() -> bool:
    """Whether this process trains with others in an initialised process group."""
    return (
        world_size() > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
    )


def join(device: torch.device) -> None:
    """Join the process group torchrun set up: NCCL on CUDA, gloo otherwise."""
    if world_size() > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)


def leave() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def shard(pair: PairBatch) -> PairBatch | None:
    """This process's slice of a batch of `world_size x b` pairs (None for a batch too small
    to give every process a pair; every process drops that batch alike)."""
    size = world_size()
    if len(pair) < size:
        return None
    bounds = [len(pair) * r // size for r in range(size + 1)]
    return pair[bounds[rank()] : bounds[rank() + 1]]


def wrap(trainer: Any, device: torch.device) -> None:
    """Replace the trainer's networks by DistributedDataParallel wrappers of them.

    `trainer.modules` keeps the plain networks (checkpoints and the trained model hold
    their own parameter names); the attributes the trainer calls become the wrappers.
    """
    wrapped: dict[int, nn.Module] = {}
    for module in trainer.modules.values():
        ids = [device.index] if device.type == "cuda" else None
        wrapped[id(module)] = nn.parallel.DistributedDataParallel(module, device_ids=ids)
    for name, value in list(vars(trainer).items()):
        if isinstance(value, nn.Module) and id(value) in wrapped:
            setattr(trainer, name, wrapped[id(value)])


def mean_losses(losses: dict[str, float], device: torch.device) -> dict[str, float]:
    """The losses averaged over the processes: the loss of the whole batch."""
    names = sorted(losses)
    values = torch.tensor([losses[n] for n in names], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(values)
    values /= world_size()
    return dict(zip(names, values.tolist(), strict=True))


def any_of(*flags: bool, device: torch.device) -> list[bool]:
    """Each flag true on any process, the same on all of them."""
    values = torch.tensor([float(flag) for flag in flags], device=device)
    torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]


def from_main(value: Any) -> Any:
    """Rank 0's `value` on every process."""
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
