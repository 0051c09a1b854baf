"""Turn `pytest benchmarks/ --benchmark-json=RESULTS.json` into a markdown table and a chart.

    python -m benchmarks.report RESULTS.json [MORE.json ...] [--chart its.png] [--breakdown BD.json ...]

Several files (one per benchmark cell, as gpu_check.sh writes them) are merged.

Prints markdown: the machine, then it/s per backend and batch, then each kernel against torch.
The chart is it/s against batch size, one line per backend, log scales. --breakdown adds the
per-launch tables of `python -m benchmarks.breakdown --json BD.json` after the it/s tables.
"""

import argparse
import json
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def load(*paths):
    """The first file's metadata and the benchmarks of all files that have results."""
    results, benches = None, []
    for path in paths:
        with open(path) as f:
            r = json.load(f)
        results = results or r
        benches += [b for b in r["benchmarks"] if b.get("extra_info")]
    return results, benches


def iteration_table(benches):
    """{row: {batch: its_per_s}} from the iteration benchmarks; a row is a backend, or a backend
    with R runs at once (per-run it/s; the aggregate GAN-it/s is R times it)."""
    table = defaultdict(dict)
    for b in benches:
        info = b["extra_info"]
        if "its_per_s" in info:
            runs = info.get("runs")
            row = info["backend"] if runs is None else f"{info['backend']}, {runs} runs"
            table[row][info["batch"]] = info["its_per_s"]
    return dict(table)


def kernel_rows(benches):
    """[(op, layer, triton_us, torch_us)]."""
    rows = defaultdict(dict)
    for b in benches:
        info = b["extra_info"]
        if "us_per_call" in info:
            rows[(info["op"], info["layer"])][info["impl"]] = info["us_per_call"]
    return [(op, layer, r.get("triton"), r.get("torch")) for (op, layer), r in rows.items()]


def _fmt(x, digits=0):
    if x is None:
        return "—"
    return f"{x:,.{digits}f}" if abs(x) >= 100 else f"{x:.3g}"


def markdown(results, benches):
    env = next((b["extra_info"] for b in benches), {})
    date = results.get("datetime", "")[:10]
    lines = [
        f"{env.get('device_name', '?')}, {date}; torch {env.get('torch')}, triton {env.get('triton')}"
        + (" (Triton interpreter)" if env.get("triton_interpreter") else ""),
        "",
    ]
    table = iteration_table(benches)
    if table:
        batches = sorted({n for row in table.values() for n in row})
        lines += ["| backend | " + " | ".join(f"batch {n}" for n in batches) + " |",
                  "|---|" + "---:|" * len(batches)]
        for backend, row in table.items():
            lines.append(f"| {backend} | " + " | ".join(_fmt(row.get(n)) for n in batches) + " |")
        lines += ["", "iterations per second of each run (median of the timed rounds); with R runs at once the "
                  "aggregate is R times it (GAN-iterations/s)", ""]
    rows = kernel_rows(benches)
    if rows:
        lines += ["| kernel | layer | Triton µs | torch µs | torch / Triton |", "|---|---|---:|---:|---:|"]
        for op, layer, tri, ref in rows:
            ratio = ref / tri if tri and ref else None
            lines.append(f"| {op} | {layer} | {_fmt(tri, 1)} | {_fmt(ref, 1)} | {_fmt(ratio, 2)} |")
    return "\n".join(lines)


def chart(benches, path, title):
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for backend, row in iteration_table(benches).items():
        batches = sorted(row)
        ax.plot(batches, [row[n] for n in batches], marker="o", label=backend)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("iterations / s")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    FigureCanvasAgg(fig)
    fig.savefig(path, bbox_inches="tight")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="--benchmark-json files")
    p.add_argument("--chart", help="write the it/s chart to this PNG")
    p.add_argument("--breakdown", nargs="+", default=[], help="benchmarks.breakdown --json files")
    args = p.parse_args(argv)
    results, benches = load(*args.results)
    text = markdown(results, benches)
    print(text)
    for path in args.breakdown:
        from .breakdown import markdown as breakdown_markdown

        with open(path) as f:
            print("\n### Where one iteration's time goes\n\n" + breakdown_markdown(json.load(f)))
    if args.chart:
        chart(benches, args.chart, text.splitlines()[0])


if __name__ == "__main__":
    main()
