"""fastgan on the CPU against its peers, all in one pytest run on the same cores: iterations per
second of the seed's GAN at batch 128 (and the batches in FASTGAN_BENCH_BATCHES, e.g. "128,1024").

Rows (`extra_info["cpu_row"]`):
  products       the iteration's nine matrix products alone (torch.mm at its shapes): the floor
  fastgan        the CPU trainer, fastgan's default on a CPU (GraphTrainer through kernels.twins)
  fastgan-stable the same with the stable recipe's settings (R1, G's EMA, beta1 0.5, its rates) at the
                 row's batch (the recipe's own batch, 256, is the batch 256 row's cost)
  fastgan-4runs  a sweep of 4 seeds in one trainer (GAN-iterations/s: 4 x its it/s), its runs spread
                 over one process per thread (fastgan.cpu_workers)
  eager          fastgan's autograd reference (`--backend eager`)
  torch          the classic plain-PyTorch loop a user writes (benchmarks.peers)
  jax-jit, jax-scan, jax-vmap4   JAX: jit per step, jit of lax.scan, vmap of 4 GANs (skipped
                 without the optional `jax` extra)

Threads: torch's default (one per core) unless OMP_NUM_THREADS says otherwise; for one core give
every peer the same one, `taskset -c 0 env OMP_NUM_THREADS=1 python -m pytest benchmarks/test_cpu.py`.
`python -m benchmarks.cpu_report RESULTS.json` turns --benchmark-json into the table with ratios;
`python -m benchmarks.cpu_alternate` times the same rows in alternating rounds (ratios within a round).
"""

import os
import time

import pytest
import torch

from fastgan.batcher import Batcher
from fastgan.graph import GraphTrainer
from fastgan.model import AdamStep, init_params
from fastgan.recipes import Hyper

from .conftest import environment
from .peers import make_jax_peer, make_torch_peer

BATCHES = [int(b) for b in os.environ.get("FASTGAN_BENCH_BATCHES", "128").split(",")]
X, Z, H = 784, 100, 128
CHUNK = 100  # iterations per call of a JAX scan and per replay of the trainer; k is a multiple
STABLE = Hyper.recipe("stable")


def _images(batch):
    # Random pixels stand in for MNIST (the cost does not depend on the values); 60,000 rows as
    # MNIST's, so the batch gathers read as much memory as training does.
    return torch.rand(max(60000, 2 * batch), X, generator=torch.Generator().manual_seed(0))


def _products(batch):
    B = batch
    shapes = [(2 * B, Z, H), (2 * B, H, X), (2 * B, X, H), (X, 2 * B, H), (B, X, H), (B, H, X), (B, X, H), (H, B, X),
              (Z, B, H)]  # G1, G2 on [z_d; z_g]; D1 on [real; fake]; D's dW1; the G step's D1, dx, G2's dx and dW, G1's dW
    mats = [(torch.rand(m, k), torch.rand(k, n), torch.empty(m, n)) for m, k, n in shapes]

    def run(k):
        for _ in range(k):
            for a, b, out in mats:
                torch.mm(a, b, out=out)
    return run


def _trainer(batch, hyper, runs=1):
    images = _images(batch)
    params = [init_params(r, "cpu") for r in range(runs)]
    batchers = [Batcher(images, batch, seed=r) for r in range(runs)]
    t = GraphTrainer(params[0] if runs == 1 else params, None, batchers[0] if runs == 1 else batchers, 100,
                     capture=False, hyper=hyper if runs == 1 else [hyper] * runs, twins=True)

    def run(k):
        for _ in range(k // 100):
            t.advance(100)
        if k % 100:
            t.advance(k % 100)
    return run


def _eager(batch):
    step, batcher = AdamStep(init_params(0, "cpu"), 1e-3), Batcher(_images(batch), batch, seed=0)

    def run(k):
        for _ in range(k):
            step(*batcher.next())
    return run


ROWS = {
    "products": (_products, 1),
    "fastgan": (lambda b: _trainer(b, Hyper()), 1),
    "fastgan-stable": (lambda b: _trainer(b, STABLE), 1),
    "fastgan-4runs": (lambda b: _trainer(b, Hyper(), runs=4), 4),
    "eager": (_eager, 1),
    "torch": (lambda b: make_torch_peer(_images(b), b), 1),
    "jax-jit": (lambda b: make_jax_peer(_images(b), b, "jit"), 1),
    "jax-scan": (lambda b: make_jax_peer(_images(b), b, "scan"), 1),
    "jax-vmap4": (lambda b: make_jax_peer(_images(b), b, "scan", runs=4), 4),
}


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("row", list(ROWS))
def test_cpu(benchmark, row, batch):
    if row.startswith("jax"):
        pytest.importorskip("jax", reason="the JAX peer needs the optional jax extra (pip install jax)")
    make, runs = ROWS[row]
    torch.set_flush_denormal(True)  # as fastgan's loop does on a CPU (Adam's moments decay into denormals)
    try:
        run = make(batch)
        run(CHUNK)  # warm-up (JAX: compiled in make)
        # rounds of ~0.5 s, whole chunks of 100 iterations (a JAX scan's length, the trainer's replay)
        k = CHUNK * max(1, round(0.5 / _seconds_per_iter(run) / CHUNK)) if not benchmark.disabled else CHUNK
        benchmark.pedantic(run, args=(k,), rounds=7, iterations=1, warmup_rounds=1)
    finally:
        torch.set_flush_denormal(False)
    benchmark.extra_info.update(environment())
    benchmark.extra_info.update(cpu_row=row, batch=batch, runs=runs, iters_per_round=k, threads=torch.get_num_threads())
    if benchmark.stats is not None:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(its_per_s=k / median, ms_per_iter=1e3 * median / k, gan_its_per_s=runs * k / median)


def _seconds_per_iter(run, k=100):
    t = time.perf_counter()
    run(k)
    return max((time.perf_counter() - t) / k, 1e-6)
