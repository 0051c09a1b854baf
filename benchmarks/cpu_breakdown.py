"""Where one iteration of fastgan's CPU trainer goes: µs per launch (each a CPU twin, kernels.twins).

    python -m benchmarks.cpu_breakdown                  # batch 128, 2 threads (torch's default)
    python -m benchmarks.cpu_breakdown --batch 1024 --threads 1

Per launch of the iteration (fastgan.graph, in order; the C++ twins where they are built, as
training runs them), four numbers:
  in loop   the launch's median wall time over --iters iterations of the trainer (caches as
            training leaves them), and its mean: the sum of the means is what an iteration pays
            (on a small VM a launch now and then takes several times its median)
  alone     the same launch repeated on its own buffers (warm caches): the gap to `in loop` is
            memory traffic between launches
  floor     the launch's time at a tiny size (batch 2, 16 pixels): its Python and dispatch cost
and the whole iteration (advance of 100 at a time, as training runs: the noise and batch draws
included, each advance's later iterations replayed from C++, kernels.twins.replay) beside the sum
of its launches (each called from Python, to be timed).
"""

import argparse
import time

import torch

from fastgan import model
from fastgan.batcher import Batcher
from fastgan.graph import GraphTrainer
from fastgan.kernels import twins

from .sites import iteration_sites, time_site

CHUNK = 100  # iterations per advance, as the training loop takes them (--iters-per-replay)


def _trainer(batch, x_dim):
    images = torch.rand(max(60000 if x_dim == model.X_DIM else 600, 2 * batch), x_dim,
                        generator=torch.Generator().manual_seed(0))
    return GraphTrainer(model.init_params(0, "cpu", x_dim), 1e-3, Batcher(images, batch, seed=0), 100, capture=False,
                        twins=True)


def in_loop(trainer, iters):
    """(median and mean µs per launch over `iters` iterations, mean µs per iteration of advance(CHUNK),
    the median over the advances)."""
    per_launch, wrapped, seen = [], {}, []
    with twins.trusted() as fast:  # an advance's later iterations call these (the C++ twins, where built)
        modules = {id(m): m for m in (trainer.L, fast)}.values()
    for L in modules:
        for name in ("linear_act_forward", "linear_act_backward", "d_grad", "d_input_grad", "adam_update"):
            fn = getattr(L, name)
            wrapped[L, name] = fn

            def timed(*a, _fn=fn, **kw):
                t0 = time.perf_counter()
                _fn(*a, **kw)
                seen.append((time.perf_counter() - t0) * 1e6)
            setattr(L, name, timed)
    plans, trainer.plans = trainer.plans, None  # each launch called from Python, to be timed
    try:
        trainer.advance(10)
        for _ in range(max(1, iters // CHUNK)):  # as the training loop advances: a chunk of iterations per call
            seen.clear()
            trainer.advance(CHUNK)
            n = len(seen) // CHUNK
            per_launch += [seen[k * n : (k + 1) * n] for k in range(CHUNK)]
    finally:
        trainer.plans = plans
        for (L, name), fn in wrapped.items():
            setattr(L, name, fn)
    whole = []
    for _ in range(max(1, iters // CHUNK)):  # as training runs: the later iterations replayed from C++
        t0 = time.perf_counter()
        trainer.advance(CHUNK)
        whole.append((time.perf_counter() - t0) * 1e6 / CHUNK)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    columns = list(zip(*per_launch))
    return [med(col) for col in columns], [sum(col) / len(col) for col in columns], med(whole)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: one per core)")
    p.add_argument("--iters", type=int, default=300, help="iterations timed (in chunks of 100)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    trainer = _trainer(args.batch, model.X_DIM)
    loop, means, whole = in_loop(trainer, args.iters)
    sites = iteration_sites(trainer)
    alone = [time_site(s, reps=20, rounds=5, cuda=False) for s in sites]
    floor, _, _ = in_loop(_trainer(2, 16), args.iters)
    print(f"CPU trainer, batch {args.batch}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| launch | in loop µs | in loop, mean µs | alone µs | floor µs |\n|---|---:|---:|---:|---:|")
    for s, a, m, b, c in zip(sites, loop, means, alone, floor):
        print(f"| {s.name} | {a:,.0f} | {m:,.0f} | {b:,.0f} | {c:,.0f} |")
    print(f"| sum of the launches | {sum(loop):,.0f} | {sum(means):,.0f} | {sum(alone):,.0f} | {sum(floor):,.0f} |")
    print(f"| whole iteration (draws included; mean) | | {whole:,.0f} | | |")


if __name__ == "__main__":
    main()
