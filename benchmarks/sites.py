"""The launch sites of one Triton-trainer iteration, as calls that can be repeated and timed:
shared by the per-launch breakdown (benchmarks.breakdown) and the tuner (benchmarks.tune).

`iteration_sites(trainer)` runs one iteration of a `fastgan.graph.GraphTrainer` with its
launchers wrapped, so each launch is listed with its arguments (the trainer's own buffers) in
the order the iteration makes them; calling `site()` launches it again. Repeating a launch
changes the buffers it writes (Adam steps again, say): time on a trainer that is thrown away.
"""

import contextlib
import time
from dataclasses import dataclass, field

import torch

LAUNCHERS = {  # the names fastgan.graph launches through -> the kernel's name in kernels/configs
    "linear_act_forward": "linear_act_fwd",
    "linear_act_backward": "linear_act_bwd",
    "d_grad": "d_grad",
    "d_input_grad": "d_input_grad",
    "adam_update": "adam",
}
ACTS = {1: "relu", 2: "sigmoid"}


@dataclass
class Site:
    """One launch of the iteration: the launcher, its arguments, and what the config lookup sees."""

    index: int
    launcher: str
    args: tuple
    kwargs: dict
    fn: object = field(repr=False)

    @property
    def kernel(self):
        return LAUNCHERS[self.launcher]

    def shape(self):
        """(M, N, K, mode) as the launcher looks its config up (mode for the linear backward)."""
        a, kw = self.args, self.kwargs
        if self.kernel == "linear_act_fwd":
            x, w = a[0], a[1]
            gathered = kw["rows"][1].shape[-1] if kw.get("rows") is not None else 0
            return x.shape[-2] + gathered, w.shape[-1], w.shape[-2], None
        if self.kernel == "linear_act_bwd":
            x, w, dx, dw = a[0], a[1], a[4], a[5]
            mode = "dx+dw" if dx is not None and dw is not None else "dx" if dx is not None else "dw"
            return x.shape[-2], w.shape[-1], w.shape[-2], mode
        if self.kernel == "d_grad":
            x, w2 = a[0], a[1]
            gathered = kw["rows"][1].shape[-1] if kw.get("rows") is not None else 0
            return x.shape[-2] + gathered, w2.shape[-2], x.shape[-1], None
        if self.kernel == "d_input_grad":
            w1, dx = a[1], a[5]
            return dx.shape[-2], w1.shape[-1], w1.shape[-2], None
        return a[0].shape[-1], 0, 0, None

    @property
    def name(self):
        """A readable label: 'D step 3: linear_act_bwd relu dW 256x128x784'."""
        M, N, K, mode = self.shape()
        act = ACTS.get(self.args[4] if self.kernel == "linear_act_fwd" else self.args[7], "") \
            if self.kernel.startswith("linear") else ""
        extra = " ".join(x for x in (act, mode or "", "gather" if self.kwargs.get("rows") is not None else "") if x)
        dims = f"{M}x{N}x{K}" if self.kernel != "adam" else f"{M} params"
        return f"{self.index:2d} {self.kernel} {extra} {dims}".replace("  ", " ")

    def __call__(self):
        """Launch it again; returns the launcher's result (the compiled kernel on a GPU)."""
        return self.fn(*self.args, **self.kwargs)


@contextlib.contextmanager
def _wrapped(trainer, sites):
    launches = trainer.L  # the Triton launchers (or, on a CPU, their twins)
    saved = {name: getattr(launches, name) for name in LAUNCHERS}

    def wrap(name, fn):
        def recorded(*args, **kwargs):
            sites.append(Site(len(sites), name, args, kwargs, fn))
            return fn(*args, **kwargs)
        return recorded

    for name, fn in saved.items():
        setattr(launches, name, wrap(name, fn))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(launches, name, fn)


def iteration_sites(trainer):
    """Prepare and run one iteration of `trainer` un-captured, returning its launch sites."""
    sites = []
    trainer.prepare(1)
    with _wrapped(trainer, sites):
        trainer._iteration(0)
    return sites


def time_site(site, reps, rounds, cuda):
    """Median µs per launch of `site`: on CUDA, `reps` launches captured in one CUDA graph (what
    the trainer pays per launch inside its graph) timed with events over `rounds` replays; on a
    CPU (the interpreter: smoke runs only), wall time of `reps` launches."""
    if not cuda:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                site()
            times.append((time.perf_counter() - t0) / reps * 1e6)
        return sorted(times)[len(times) // 2]
    site()  # compile and load before capture
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, capture_error_mode="thread_local"):
        for _ in range(reps):
            site()
    g.replay()  # warm-up replay, not timed
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / reps)
    return sorted(times)[len(times) // 2]
