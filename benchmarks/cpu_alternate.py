"""fastgan's CPU trainer and its peers (benchmarks/test_cpu.py's rows) timed in alternation: each
round runs every row once, 100 iterations each, one after another in a rotating order, so the rows
of a round share the machine's minute; fastgan's ratio to each row is taken within each round and
the rounds' median reported, with its quartiles.

Why: a small VM's speed moves by up to 2x from one minute to the next (benchmarks/NOTES.md), and
pytest-benchmark times each row in its own few seconds, so a row can win or lose by its minute
alone; the ratio within a round cancels the minute.

    python -m benchmarks.cpu_alternate                              # batch 128, every row, 15 rounds
    python -m benchmarks.cpu_alternate --batch 1024 --rows fastgan,jax-scan --rounds 9
    taskset -c 0 env OMP_NUM_THREADS=1 python -m benchmarks.cpu_alternate  # one core for every row
"""

import argparse
import statistics
import time

import torch

from .cpu_report import ORDER, compared_with
from .test_cpu import CHUNK, ROWS


def alternate(names, batch, rounds, iters=CHUNK):
    """{row: [seconds per iteration in each round]} and {row: why it was left out}."""
    runs, skipped = {}, {}
    for name in names:
        make, _ = ROWS[name]
        try:
            run = make(batch)
        except ImportError as e:  # the JAX rows without the optional jax extra
            skipped[name] = f"needs {e.name or e}"
            continue
        run(iters)  # warm-up (JAX: compiled in make)
        runs[name] = run
    order, times = list(runs), {name: [] for name in runs}
    for r in range(rounds):
        for name in order[r % len(order):] + order[: r % len(order)]:  # rotated: no row always first
            t = time.perf_counter()
            runs[name](iters)
            times[name].append((time.perf_counter() - t) / iters)
    return times, skipped


def markdown(times, skipped, batch, rounds):
    lines = [f"batch {batch}, {torch.get_num_threads()} threads, torch {torch.__version__}, {rounds} rounds of "
             f"{CHUNK} iterations per row (medians; fastgan's ratio per round, median [quartiles])", "",
             "| row | it/s (GAN-it/s) | ms per iteration | fastgan's ratio to it |", "|---|---:|---:|---:|"]
    for name in [n for n in ORDER if n in times] + sorted(set(times) - set(ORDER)):
        runs, secs = ROWS[name][1], statistics.median(times[name])
        ours = compared_with(runs)
        if ours in times and ours != name:  # ratio of GAN-it/s within each round: ours / theirs
            ratios = [theirs / runs / (mine / ROWS[ours][1]) for mine, theirs in zip(times[ours], times[name])]
            q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
            ratio = f"{statistics.median(ratios):.2f}x [{q1:.2f}-{q3:.2f}]"
        else:
            ratio = "—"
        shown = f"{runs / secs:,.0f}" + (f" ({runs} GANs)" if runs > 1 else "")
        lines.append(f"| {name} | {shown} | {1e3 * secs:.2f} | {ratio} |")
    lines += [f"| {name} | left out: {why} | | |" for name, why in skipped.items()]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--rows", default=",".join(ORDER), help=f"comma-separated, of: {', '.join(ROWS)}")
    args = p.parse_args(argv)
    names = [n for n in args.rows.split(",") if n]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        p.error(f"unknown rows {', '.join(unknown)}; the rows are {', '.join(ROWS)}")
    names.sort(key=list(ROWS).index)  # made in ROWS' order: a sweep forks its workers before JAX starts its threads
    torch.set_flush_denormal(True)  # as fastgan's loop does on a CPU
    times, skipped = alternate(names, args.batch, args.rounds)
    print(markdown(times, skipped, args.batch, args.rounds))


if __name__ == "__main__":
    main()
