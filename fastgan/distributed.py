"""Sweeps across processes, GPUs and machines with torchrun (torch.distributed.elastic).

    torchrun --nproc-per-node 8 train.py --sweep "lr=1e-3,2e-4 seed=0-15" --out /shared/grid

Each process trains the runs whose index modulo the world size is its rank, on cuda:LOCAL_RANK
(or the CPU), in its own trainer and graph, and writes their run folders. Rank 0 writes
sweep.json and, after gathering every rank's per-run summary rows and best grids through
torch.distributed (nccl on GPUs, gloo on CPUs), the summary files: it reads no other process's
files. When torchrun restarts a failed group (--max-restarts), the same command line continues
each run from its newest checkpoint.
"""

import os
from datetime import timedelta

import torch
import torch.distributed as dist

from .errors import FastganError


def world():
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def restarted():
    """True when torchrun has restarted the worker group after a failure."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0


class Group:
    """The process group of one sweep: nccl on CUDA, gloo on the CPU."""

    def __init__(self, device):
        self.rank, self.size, _ = world()
        if device.type == "cuda":
            torch.cuda.set_device(device)
        # torchrun's store outlives a restarted worker group, and so do the addresses the last
        # group's ranks published in it: a restarted rank could read a dead peer's address and
        # fail to connect (seen here with gloo). Each restart gets keys of its own.
        timeout = timedelta(minutes=30)
        host, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", 29500))
        agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        store = dist.TCPStore(host, port, self.size, is_master=self.rank == 0 and not agent_store, timeout=timeout)
        store = dist.PrefixStore(f"fastgan/restart{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=self.rank,
                                world_size=self.size, timeout=timeout)

    def share(self, items):
        """This rank's share: the items whose index modulo the world size is the rank."""
        mine = [x for i, x in enumerate(items) if i % self.size == self.rank]
        if not mine:
            raise FastganError(f"{len(items)} runs for {self.size} processes leave process {self.rank} nothing to "
                               f"train; start at most {len(items)} processes")
        return mine

    def broadcast(self, obj):
        """Rank 0's object, on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj):
        """Every rank's object, in rank order, on rank 0 (None elsewhere)."""
        out = [None] * self.size if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0)
        return out

    def barrier(self):
        dist.barrier()

    def close(self):
        if dist.is_initialized():
            dist.destroy_process_group()


class Alone:
    """A sweep's "group" when one process trains all of it (no torchrun): the same calls as Group."""

    rank, size = 0, 1

    def share(self, items):
        return items

    def broadcast(self, obj):
        return obj

    def gather(self, obj):
        return [obj]

    def barrier(self):
        pass

    def close(self):
        pass
