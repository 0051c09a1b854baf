"""Where the time of one Triton-trainer iteration goes: µs per launch, beside the whole iteration.

    python -m benchmarks.breakdown                       # batch 128 and 8192, one run
    python -m benchmarks.breakdown --batch 128 --runs 64 --precision tf32 --json out.json

Per launch of the iteration (fastgan.graph, in order), two numbers:
  events    median over --iters iterations launched un-captured, CUDA events recorded around
            each launch (what `--backend fused` pays, host launch gaps partly included)
  in graph  the same launch repeated in one CUDA graph, per launch (what `--backend graph`
            pays for it: GPU time plus the graph's per-node cost)
and the whole iteration as the graph trainer replays it (K iterations per replay), so the sum of
the parts can be set against the whole. On a CPU (Triton's interpreter) the same runs with wall
time: a smoke check of the tool, not a measurement.
"""

import argparse
import json
import os
import sys
import time

import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fastgan import model  # noqa: E402
from fastgan.batcher import Batcher  # noqa: E402
from fastgan.graph import GraphTrainer  # noqa: E402

from .sites import iteration_sites, time_site  # noqa: E402


def make_trainer(batch, runs, precision, device, iters_per_replay, capture=False):
    images = torch.rand(max(2 * batch, 1024 if device.type == "cuda" else 64), model.X_DIM, device=device)
    params = [model.init_params(r, device) for r in range(runs)]
    batchers = [Batcher(images, batch, seed=r) for r in range(runs)]
    if runs == 1:
        return GraphTrainer(params[0], 1e-3, batchers[0], iters_per_replay, capture=capture, precision=precision)
    return GraphTrainer(params, [1e-3] * runs, batchers, iters_per_replay, capture=capture, precision=precision)


def _event_times(sites, cuda):
    """Launch every site once with a timer around each; returns a function giving µs per site."""
    if not cuda:
        marks = []
        for s in sites:
            t0 = time.perf_counter()
            s()
            marks.append((time.perf_counter() - t0) * 1e6)
        return lambda: marks
    pairs = []
    for s in sites:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        s()
        end.record()
        pairs.append((start, end))
    return lambda: [a.elapsed_time(b) * 1e3 for a, b in pairs]


def whole_iteration_us(batch, runs, precision, device, iters_per_replay, rounds):
    """Median µs per iteration of the graph trainer (captured on CUDA), after warm-up."""
    trainer = make_trainer(batch, runs, precision, device, iters_per_replay, capture=device.type == "cuda")
    trainer.warm_up()
    trainer.advance(iters_per_replay)
    times = []
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.advance(iters_per_replay)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) / iters_per_replay * 1e6)
    return sorted(times)[len(times) // 2]


def breakdown(batch, runs=1, precision="ieee", iters=50, reps=20, device=None):
    """One record: per-site µs (events and in graph) and the whole iteration's µs."""
    device = device or torch.device("cuda" if HAS_CUDA else "cpu")
    cuda = device.type == "cuda"
    trainer = make_trainer(batch, runs, precision, device, iters_per_replay=1)
    sites = iteration_sites(trainer)  # also compiles every kernel
    samples = []
    for _ in range(iters):
        trainer.prepare(1)
        samples.append(_event_times(sites, cuda))
    if cuda:
        torch.cuda.synchronize()
    per_site = list(zip(*(read() for read in samples)))
    rows = []
    for site, times in zip(sites, per_site):
        rows.append({"site": site.name, "kernel": site.kernel, "events_us": sorted(times)[len(times) // 2],
                     "graph_us": time_site(site, reps if cuda else 1, 5 if cuda else 1, cuda)})
    K = 100 if cuda else 2
    whole = whole_iteration_us(batch, runs, precision, device, K, rounds=20 if cuda else 1)
    return {"batch": batch, "runs": runs, "precision": precision,
            "device": torch.cuda.get_device_name(device) if cuda else "CPU (Triton interpreter)",
            "launches": rows, "iteration_us": whole, "iters_per_replay": K}


def markdown(records):
    out = []
    for r in records:
        out.append(f"#### batch {r['batch']}, {r['runs']} run(s), {r['precision']} — {r['device']}\n")
        out.append("| launch | events µs | in graph µs | share of graph sum |")
        out.append("|---|---:|---:|---:|")
        total = sum(x["graph_us"] for x in r["launches"]) or 1.0
        for x in r["launches"]:
            out.append(f"| {x['site']} | {x['events_us']:.1f} | {x['graph_us']:.1f} | {100 * x['graph_us'] / total:.0f}% |")
        out.append(f"| **sum of launches** | {sum(x['events_us'] for x in r['launches']):.1f} | {total:.1f} | |")
        out.append(f"| **whole iteration, graph trainer** (K = {r['iters_per_replay']}) | | {r['iteration_us']:.1f} "
                   f"({1e6 / r['iteration_us']:,.0f} it/s) | |\n")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[128, 8192] if HAS_CUDA else [8])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--precision", default="ieee", choices=("ieee", "tf32x3", "tf32"))
    p.add_argument("--iters", type=int, default=50 if HAS_CUDA else 2, help="un-captured iterations timed")
    p.add_argument("--json", help="also write the records here")
    args = p.parse_args(argv)
    records = [breakdown(b, args.runs, args.precision, args.iters) for b in args.batch]
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    print(markdown(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
