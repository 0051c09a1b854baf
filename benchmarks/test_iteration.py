"""Iterations per second of the seed's full training iteration, per backend and batch size.

One iteration: batch draw, noise, D step (D on real and fake, loss, backward, Adam), fresh
noise, G step (G, D, loss, backward through D, Adam on G). Every timed round runs a fixed
number of iterations and ends with a device synchronize; warm-up, compilation and graph
capture happen before timing. `extra_info` carries it/s and µs per iteration.

Backends:
  eager            fastgan.model.AdamStep: autograd + torch.optim.Adam (the reference)
  eager_cudagraph  the same step with capturable Adam, captured whole in one torch.cuda.CUDAGraph
                   (batch indices drawn with randint in the graph, i.e. with replacement)
  compile          the same step with G and D wrapped in torch.compile
  fused            fastgan.graph.GraphTrainer launched un-captured (`--backend fused`)
  graph            the same, ITERS_PER_REPLAY iterations per CUDA-graph replay (`--backend graph`):
                   static buffers, 10 Triton launches per iteration (any number of runs)

On a CPU-only machine only small cases run (fused under Triton's interpreter at batch 8).
"""

import pytest
import torch

from fastgan.batcher import Batcher
from fastgan.model import TORCH_OPS, Z_DIM, AdamStep, init_params
from fastgan.recipes import Hyper

from .conftest import DEVICE, HAS_CUDA, environment, sync

BATCHES = (128, 1024, 8192)
GPU_BACKENDS = ("eager", "eager_cudagraph", "compile", "fused", "graph")
ITERS_PER_REPLAY = 100  # train.py's default --iters-per-replay
# Iterations per timed round: enough that a round is well past timer resolution.
ITERS_PER_ROUND = {"eager": 50, "eager_cudagraph": 500, "compile": 50, "fused": 100, "graph": 2000}

if HAS_CUDA:
    CASES = [(backend, batch) for backend in GPU_BACKENDS for batch in BATCHES]
else:
    CASES = [("eager", 128), ("eager", 1024), ("fused", 8), ("graph", 8)] + [
        pytest.param(backend, 128, marks=pytest.mark.skip(reason=f"{backend} needs a CUDA GPU"))
        for backend in ("eager_cudagraph", "compile")
    ]


def _images(batch):
    # Random pixels stand in for MNIST: the iteration's cost does not depend on their values.
    return torch.rand(max(60000, 2 * batch), 784, device=DEVICE)


def _runner(backend, batch):
    """A function running k iterations (no sync), after warm-up/compile/capture."""
    params = init_params(0, DEVICE)
    images = _images(batch)
    if backend == "eager_cudagraph":
        step = AdamStep(params, 1e-3, capturable=True)

        def body():
            idx = torch.randint(len(images), (batch,), device=DEVICE)
            z = torch.rand(2, batch, Z_DIM, device=DEVICE) * 2 - 1
            step(images.index_select(0, idx), z[0], z[1])

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                body()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            body()

        def run(k):
            for _ in range(k):
                graph.replay()

        return run

    if backend in ("graph", "fused"):
        from fastgan.graph import GraphTrainer

        k_replay = ITERS_PER_REPLAY if HAS_CUDA else 1
        trainer = GraphTrainer(params, 1e-3, Batcher(images, batch, seed=0), k_replay, capture=backend == "graph" and HAS_CUDA)
        trainer.warm_up()  # compiles every kernel, captures the graph and checks one replay (on CUDA)
        trainer.advance(k_replay)

        def run(k):
            for _ in range(k // k_replay):
                trainer.advance(k_replay)

        return run

    step = AdamStep(params, 1e-3, TORCH_OPS)
    if backend == "compile":
        step.G = torch.compile(step.G)
        step.D = torch.compile(step.D)
    batcher = Batcher(images, batch, seed=0)

    def run(k):
        for _ in range(k):
            step(*batcher.next())

    run(3)
    return run


def _sweep_runner(backend, batch, runs):
    """k iterations of `runs` GANs at once: one Triton trainer (graph, fused) or a loop (eager)."""
    from fastgan import backends
    from fastgan.config import Config

    images = _images(batch)
    inits = [backends.RunInit(init_params(r, DEVICE), Hyper(), Batcher(images, batch, seed=r)) for r in range(runs)]
    k_replay = ITERS_PER_REPLAY if HAS_CUDA else 1
    cfg = Config(iters_per_replay=k_replay, backend=backend)
    trainer = backends.make_trainer(backend, inits, cfg, DEVICE, log=print)
    trainer.advance(k_replay)

    def run(k):
        for _ in range(k // k_replay):
            trainer.advance(k_replay)

    return run


def _time(benchmark, run, k, **info):
    sync()

    def timed():
        run(k)
        sync()

    benchmark.pedantic(timed, rounds=10 if HAS_CUDA else 3, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(environment())
    benchmark.extra_info.update(iters_per_round=k, **info)
    if benchmark.stats is not None:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        runs = info.get("runs", 1)
        benchmark.extra_info.update(its_per_s=k / median, us_per_iter=1e6 * median / k, gan_its_per_s=runs * k / median)


@pytest.mark.parametrize("backend,batch", CASES)
def test_iteration(benchmark, backend, batch):
    k = ITERS_PER_ROUND[backend] if HAS_CUDA else (1 if backend in ("fused", "graph") else 20)
    _time(benchmark, _runner(backend, batch), k, backend=backend, batch=batch)


# Many GANs at once (sweeps): per-run it/s and aggregate GAN-iterations/s at batch 128.
if HAS_CUDA:
    RUN_CASES = [("graph", 128, 1), ("graph", 128, 8), ("graph", 128, 64), ("fused", 128, 8), ("eager", 128, 8)]
else:
    RUN_CASES = [("graph", 8, 2), ("eager", 128, 4)]


@pytest.mark.parametrize("backend,batch,runs", RUN_CASES)
def test_iteration_runs(benchmark, backend, batch, runs):
    k = ITERS_PER_ROUND[backend] if HAS_CUDA else (1 if backend in ("fused", "graph") else 10)
    _time(benchmark, _sweep_runner(backend, batch, runs), k, backend=backend, batch=batch, runs=runs)
