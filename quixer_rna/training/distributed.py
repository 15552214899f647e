"""Where this process sits in a torchrun job, and the few collectives the training loop needs.

With RANK / WORLD_SIZE set (torchrun), the process joins the group once: NCCL on CUDA (with its device
given, so NCCL binds the right GPU from the start), gloo on CPU. Each rank draws its own dropout masks:
rank 0 keeps the stream seeded by --seed (so one process reproduces a plain run), rank r > 0 is reseeded
from (--seed, r) after the model is built (so every rank starts from the same weights).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from typing import Any

import torch

from ..cli import resolve_device
from ..errors import UserError

# Collectives may wait for rank 0's work (a checkpoint write, the last evaluation shard) longer than
# torch's 10-minute default on a big data set.
TIMEOUT = _dt.timedelta(hours=2)


@dataclass
class DistContext:
    """Rank 0 of 1 when run plainly."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks, as a new tensor on the input's device (NCCL reduces on the GPU)."""
        if not self.active:
            return tensor.clone()
        summed = tensor.to(self.device, copy=True)
        torch.distributed.all_reduce(summed)
        return summed.to(tensor.device)

    def all_gather_objects(self, value: Any) -> list[Any]:
        if not self.active:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def broadcast_object(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if not self.active:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's rows (ranks may hold different counts) in rank order, on every rank."""
        if not self.active:
            return tensor
        counts = self.all_gather_objects(int(tensor.shape[0]))
        padded = torch.zeros((max(counts), *tensor.shape[1:]), dtype=tensor.dtype, device=self.device)
        padded[: tensor.shape[0]] = tensor.to(self.device)
        pieces = [torch.empty_like(padded) for _ in range(self.world_size)]
        torch.distributed.all_gather(pieces, padded)
        return torch.cat([piece[:count] for piece, count in zip(pieces, counts)]).to(tensor.device)

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def shard(self, count: int) -> tuple[int, int]:
        """This rank's contiguous [begin, end) share of `count` items (rank order = item order)."""
        begin = count * self.rank // self.world_size
        return begin, count * (self.rank + 1) // self.world_size

    def close(self, settle: bool = False) -> None:
        """Leave the process group. `settle` (every rank got here): two barriers first, so that gloo's worker
        threads have freed the last collectives' buffers, which takes the GIL, before the group is destroyed;
        destroying it while a worker waits for the GIL this thread holds deadlocks (seen in about 1 of 20
        two-rank CPU runs, the rank left behind hanging at exit)."""
        if self.active and torch.distributed.is_initialized():
            if settle:
                torch.distributed.barrier()
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """Rank 0 keeps --seed; other ranks get their own stream derived from it."""
    return seed if rank == 0 else (seed * 1_000_003 + 7919 * rank) % 2**63


def setup_distributed(device_spec: str) -> DistContext:
    """Join the torchrun process group when RANK/WORLD_SIZE say so, once per process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device_spec))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_spec)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"torchrun: local rank {local_rank} but only {torch.cuda.device_count()} GPU(s) visible; "
                            "give --nproc_per_node at most the GPU count")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.distributed.init_process_group(backend="nccl", timeout=TIMEOUT, device_id=device)
        else:
            torch.distributed.init_process_group(backend="gloo", timeout=TIMEOUT)
    return DistContext(rank, world, local_rank, device)
