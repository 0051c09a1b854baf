"""Tune the launch configurations of the Triton trainer's iteration on this GPU, in one call.

    python -m benchmarks.tune                      # batch 128, 8192, 1024; R = 1 and 64; <= 240 s
    python -m benchmarks.tune --budget 120 --batch 128 --runs 1
    python -m benchmarks.tune --smoke --out /tmp/table.json     # CPU, Triton's interpreter: the plumbing only

For every matrix-product launch of one iteration (kernels.linear_act forward and backward, D's
input gradient, D's gradients), at the shapes the iteration really launches (benchmarks.sites),
each candidate configuration below is launched `--reps` times inside one CUDA graph (so launch
overhead counts as the trainer pays it) and timed with CUDA events, at every --runs value (R GANs at once). A candidate that fails to
compile or spills registers (the compiled kernel's n_spills) is skipped. Per launch shape the
candidate with the smallest sum over R of time / default time wins; configs are keyed by shape
only, never by R, so a sweep's run still equals the run alone bitwise. Launch shapes are tuned
in order of batch (128 first) until the budget runs out; the rest keep the default table.

Writes kernels/configs/<device>.json (kernels.configs.device_file; --out to put it elsewhere)
with each entry's measured µs per R and the default's beside it; the launchers read it on that
card from then on. Commit it. Adam keeps its defaults (a memory-bound elementwise update). The
Adam cost of more gradient slots (one extra read of the gradients per slot) is not in a
candidate's time, nor the cost to d_grad and d_input_grad of summing a split-K forward's slots
in a forward candidate's, nor the cost to G1's backward of summing a split-N dx's slots.
"""

import argparse
import datetime
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import triton  # noqa: E402

from fastgan.kernels import configs  # noqa: E402

from .breakdown import make_trainer  # noqa: E402
from .sites import iteration_sites, time_site  # noqa: E402

MAX_SPLIT = 8  # the trainer under tuning gets this many gradient slots, so every split candidate fits


def _fwd(bm, bn, bk, warps=4, stages=3, split=1):
    return {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "SPLIT_K": split, "num_warps": warps, "num_stages": stages}


def _bwd(dx, dw, split, warps=4, stages=1, split_n=1):
    return {"DX_BLOCK_M": dx[0], "DX_BLOCK_N": dx[1], "DX_BLOCK_K": dx[2], "DW_BLOCK_M": dw[0], "DW_BLOCK_N": dw[1],
            "DW_BLOCK_K": dw[2], "SPLIT_M": split, "SPLIT_N": split_n, "num_warps": warps, "num_stages": stages}


def _dig(bm, bk, split, warps=4, stages=1):  # d_input_grad's and d_grad's configs
    return {"BLOCK_M": bm, "BLOCK_K": bk, "SPLIT": split, "num_warps": warps, "num_stages": stages}


# The search space: small tiles for the latency regime (batch 128), large ones for throughput
# (8192), a few warp and stage counts. The backward pipelines only with small tiles (at 64x64x64,
# 3 stages spilled ~1.7 KB; at 16x64x32 dx / 32x64x32 dW it does not).
CANDIDATES = {
    "linear_act_fwd": [_fwd(16, 32, 64), _fwd(16, 64, 64), _fwd(32, 64, 32), _fwd(32, 64, 64, 4, 2),
                       _fwd(64, 64, 64), _fwd(64, 64, 32, 4, 4), _fwd(64, 128, 32, 8, 3), _fwd(128, 64, 32, 8, 3),
                       _fwd(16, 32, 64, split=4), _fwd(16, 16, 64, split=2), _fwd(32, 32, 32, split=8)],
    "d_input_grad": [_dig(16, 64, 8), _dig(16, 32, 8), _dig(32, 64, 4), _dig(32, 32, 8, 4, 2), _dig(32, 32, 8, 4, 3),
                     _dig(64, 32, 8, 8, 2), _dig(128, 32, 8, 8, 2)],
    "d_grad": [_dig(32, 32, 4, 8), _dig(16, 16, 4, 4, 2), _dig(32, 16, 4), _dig(16, 32, 8, 4, 2), _dig(32, 32, 8, 8),
               _dig(16, 16, 8, 4, 2), _dig(64, 32, 8, 8)],
    "linear_act_bwd": [_bwd((16, 64, 64), (64, 64, 64), 4), _bwd((16, 64, 32), (32, 64, 64), 2),
                       _bwd((32, 64, 64), (64, 64, 64), 1), _bwd((32, 64, 64), (64, 64, 64), 8),
                       _bwd((64, 64, 64), (64, 64, 64), 5), _bwd((64, 64, 64), (64, 64, 32), 8, 8),
                       _bwd((64, 32, 64), (128, 64, 64), 2, 8), _bwd((16, 64, 32), (32, 64, 32), 2, 4, 3),
                       _bwd((16, 64, 64), (16, 16, 16), 1, 4, 3), _bwd((16, 64, 32), (32, 64, 32), 4, 4, 2),
                       _bwd((16, 64, 32), (32, 64, 32), 2, 4, 3, split_n=4),
                       _bwd((16, 64, 32), (32, 64, 32), 2, 4, 3, split_n=2),
                       _bwd((16, 32, 32), (32, 64, 32), 4, 4, 2, split_n=8)],
}


def _slots_table():
    """A table giving every split launch MAX_SPLIT slots (for the trainer under tuning)."""
    return [{"kernel": "linear_act_bwd", "config": _bwd((16, 16, 64), (16, 64, 64), MAX_SPLIT, split_n=MAX_SPLIT)},
            {"kernel": "linear_act_fwd", "config": _fwd(16, 16, 16, split=MAX_SPLIT)},
            {"kernel": "d_grad", "config": _dig(16, 16, MAX_SPLIT)},
            {"kernel": "d_input_grad", "config": _dig(16, 16, MAX_SPLIT)}]


def _key(site):
    M, N, K, mode = site.shape()
    return (site.kernel, M, N, K, mode)


def _time_candidate(site, config, reps, rounds, cuda):
    """µs per launch of `site` under `config`, or None if it fails to compile or spills."""
    with configs.use([{"kernel": site.kernel, "config": config}]):
        try:
            compiled = site()
        except Exception as e:  # a candidate that does not compile or launch is not a result
            return None, f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:200]
        if getattr(compiled, "n_spills", 0):
            return None, f"spills {compiled.n_spills} registers"
        return time_site(site, reps, rounds, cuda), None


def tune(batches, runs, budget_s, reps, rounds, candidates, log=print):
    """{key: {"config", "us": {R: µs}, "default_us": {R: µs}}} for the launch shapes tuned in time."""
    cuda = HAS_CUDA
    device = torch.device("cuda" if cuda else "cpu")
    deadline = time.monotonic() + budget_s
    times = defaultdict(lambda: defaultdict(dict))  # key -> candidate index -> R -> µs ("default": -1)
    skipped = 0
    for batch in batches:
        for R in runs:
            if time.monotonic() > deadline:
                log(f"budget spent: batch {batch}, R = {R} not tuned")
                continue
            with configs.use(_slots_table()):
                trainer = make_trainer(batch, R, "ieee", device, iters_per_replay=1)
            sites = [s for s in iteration_sites(trainer) if s.kernel in candidates]
            for site in sites:
                key = _key(site)
                with configs.use([]):  # the default table's config, even where this card has a tuned table
                    times[key][-1][R] = time_site(site, reps, rounds, cuda)
                for i, config in enumerate(candidates[site.kernel]):
                    if time.monotonic() > deadline:
                        skipped += 1
                        break
                    us, why = _time_candidate(site, config, reps, rounds, cuda)
                    if us is None:
                        log(f"  skip {site.kernel} {key[1:]} candidate {i}: {why}")
                    else:
                        times[key][i][R] = us
            log(f"batch {batch}, R = {R}: {len(sites)} launches timed ({time.monotonic() - deadline + budget_s:.0f} s)")
            del trainer, sites
            if cuda:
                torch.cuda.empty_cache()
    chosen = {}
    for key, by_candidate in times.items():
        default = by_candidate.pop(-1)
        complete = {i: t for i, t in by_candidate.items() if set(t) == set(default)}  # timed at every R
        if not complete:
            continue
        best = min(complete, key=lambda i: sum(complete[i][R] / default[R] for R in default))
        chosen[key] = {"config": candidates[key[0]][best], "us": complete[best], "default_us": default}
    if skipped:
        log(f"budget spent: {skipped} launch shapes kept part of their candidates untimed")
    return chosen


def entries(chosen):
    """Table entries, most specific first: per kernel, N, K and mode by ascending M (max_M)."""
    out = []
    for (kernel, M, N, K, mode), r in sorted(chosen.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3], str(kv[0][4]))):
        entry = {"kernel": kernel, "max_M": M, "N": N, "K": K}
        if mode is not None:
            entry["mode"] = mode
        entry.update(config=r["config"], us={str(R): round(t, 2) for R, t in r["us"].items()},
                     default_us={str(R): round(t, 2) for R, t in r["default_us"].items()})
        out.append(entry)
    return out


def write(path, table):
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(table, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, nargs="+", default=[128, 8192, 1024])
    p.add_argument("--runs", type=int, nargs="+", default=[1, 64])
    p.add_argument("--budget", type=float, default=240, help="seconds of tuning; the rest keeps the default table")
    p.add_argument("--reps", type=int, default=20, help="launches per captured graph")
    p.add_argument("--rounds", type=int, default=5, help="timed replays per candidate (median)")
    p.add_argument("--out", help="table file (default: kernels/configs/<this GPU>.json)")
    p.add_argument("--smoke", action="store_true",
                   help="CPU check of the tool: interpreter, batch 8, R = 1 and 2, two candidates per launch")
    args = p.parse_args(argv)
    if args.smoke:
        if not args.out:
            p.error("--smoke needs --out (it must not write a card's table)")
        args.batch, args.runs, args.reps, args.rounds = [8], [1, 2], 1, 1
        candidates = {k: v[:2] for k, v in CANDIDATES.items()}
    elif not HAS_CUDA:
        print("error: tuning times kernels on a CUDA GPU and none is visible; on a CPU run --smoke --out FILE",
              file=sys.stderr)
        return 2
    else:
        candidates = CANDIDATES
    name = torch.cuda.get_device_name() if HAS_CUDA else "CPU (Triton interpreter, smoke)"
    out = Path(args.out) if args.out else configs.device_file(name)
    t0 = time.monotonic()
    chosen = tune(args.batch, args.runs, args.budget, args.reps, args.rounds, candidates)
    table = {
        "about": f"Tuned by python -m benchmarks.tune on {name} (batches {args.batch}, R {args.runs}, "
                 f"{args.reps} launches per graph, median of {args.rounds}); us: µs per launch of the chosen "
                 "config per R, default_us: the default table's.",
        "device": name, "torch": torch.__version__, "triton": triton.__version__,
        "date": datetime.date.today().isoformat(), "seconds": round(time.monotonic() - t0, 1),
        "entries": entries(chosen),
    }
    write(out, table)
    faster = [e for e in table["entries"] if sum(e["us"].values()) < sum(e["default_us"].values())]
    print(f"wrote {out}: {len(table['entries'])} launch shapes tuned in {table['seconds']} s, "
          f"{len(faster)} faster than the default table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
