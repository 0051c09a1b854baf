"""Device and backend choice, the trainer interface every backend implements, and the eager trainer.

A trainer trains R runs in lockstep (R = 1: an ordinary run; R > 1: a sweep). `eager` is the
plain-PyTorch reference (fastgan.model.AdamStep, one per run); `fused` and `graph` are the
Triton trainer (fastgan.graph.GraphTrainer), launched un-captured or replayed from a CUDA graph.
"""

from collections import namedtuple
from typing import Optional, Protocol

import torch

from . import distributed
from .errors import FastganError
from .model import TORCH_OPS, AdamStep

RunInit = namedtuple("RunInit", "params hyper batcher")  # hyper: fastgan.recipes.Hyper


class Trainer(Protocol):
    """What the training loop asks of a backend."""

    backend: str  # its name: eager, fused or graph
    ops: object  # the forward ops (fastgan.model) that run_params are drawn with
    batchers: list  # one per run (fastgan.batcher.Batcher): the trainer draws from them, the loop saves them
    chunk: Optional[int]  # the iterations per advance() it needs (a captured graph's length), or None: any

    def advance(self, n: int) -> torch.Tensor:
        """Train n iterations; the last one's [d_loss, d_real, d_fake, g_loss] per run, an (R, 4)
        device tensor, without waiting for the device."""

    def run_params(self, r: int) -> dict:
        """Run r's parameters: name -> tensor, as in fastgan.model."""

    def sample_params(self, r: int) -> dict:
        """The G weights run r's grids draw with: its EMA's (--g-ema or --g-ema-rel), else its parameters."""

    def state_dict(self, r: int) -> dict:
        """Run r's {"params", "adam"[, "ema"]} in the checkpoint format (fastgan.checkpoint)."""

    def load_state_dict(self, state: dict, r: int) -> None:
        """Continue run r from a state_dict or a checkpoint."""

    def close(self) -> None:
        """Give back what the trainer holds beyond memory (a CPU sweep's worker processes)."""


def pick_device(name, log):
    """The training device: under torchrun, this process's GPU (cuda:LOCAL_RANK)."""
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", distributed.world()[2] % torch.cuda.device_count())
    if name == "cuda":
        raise FastganError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    log("notice: no CUDA device found; training on the CPU (slow)")
    return torch.device("cpu")


def pick_backend(name, device):
    """The backend `name` names; auto: graph on CUDA, fused on a CPU (the Triton trainer's
    launches as their CPU twins, kernels.twins)."""
    return ("graph" if device.type == "cuda" else "fused") if name == "auto" else name


class EagerTrainer:
    """The plain-PyTorch reference as a trainer: per run, one `AdamStep` call per iteration."""

    backend = "eager"
    ops = TORCH_OPS
    chunk = None

    def __init__(self, runs):
        self.steps = [AdamStep(r.params, r.hyper.lr_d, hyper=r.hyper) for r in runs]
        self.batchers = [r.batcher for r in runs]

    def advance(self, n):
        last = []
        for step, batcher in zip(self.steps, self.batchers):
            for _ in range(n):
                losses = step(*batcher.next())
            last.append(losses)
        return torch.stack(last)

    def run_params(self, r):
        return self.steps[r].params

    def sample_params(self, r):
        return self.steps[r].sample_params()

    def state_dict(self, r):
        return self.steps[r].state_dict()

    def load_state_dict(self, state, r):
        self.steps[r].load_state_dict(state)

    def close(self):
        pass


def make_trainer(backend, runs, cfg, device, log=print):
    """A trainer for `runs` (a list of RunInit) on `device`; `auto` falls back to eager if the
    graph fails at start-up."""
    if cfg.precision != "ieee" and (backend == "eager" or device.type == "cpu"):
        log(f"notice: --precision {cfg.precision} applies to the Triton kernels on a GPU; the {backend} backend on "
            f"{device.type} computes in IEEE fp32")
    if backend == "eager":
        return EagerTrainer(runs)
    try:
        from . import kernels  # noqa: F401  (is Triton there?)
    except ImportError as e:
        raise FastganError(f"--backend {backend} needs Triton ({e}); install it or use --backend eager")
    from .graph import GraphTrainer

    trainer = GraphTrainer([r.params for r in runs], None, [r.batcher for r in runs], cfg.iters_per_replay,
                           capture=None if backend == "graph" else False, precision=cfg.precision,
                           hyper=[r.hyper for r in runs])
    trainer.backend = backend
    if trainer.workers is not None:
        log(f"the {trainer.R} runs share {len(trainer.workers.procs) + 1} processes, one thread each (one per core)")
    try:
        trainer.warm_up()  # compile, capture and check the graph now, while nothing else uses the GPU
    except Exception as e:  # a compile, capture or replay-check failure: say it in one line
        what = f"{type(e).__name__}: {_first_line(e)}"
        if cfg.backend != "auto":
            raise FastganError(f"--backend graph failed at start-up ({what}); try --backend eager") from None
        fp32 = " in IEEE fp32" if cfg.precision != "ieee" else ""
        log(f"notice: the CUDA-graph backend failed at start-up ({what}); training with the eager backend{fp32} instead")
        return EagerTrainer(runs)
    return trainer


def _first_line(e):
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[0] if lines else "no message"
