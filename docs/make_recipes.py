"""Regenerate docs/recipes.md's tables and docs/recipes.png from the recipe search's run folders:

    python docs/make_recipes.py runs/screen-A runs/screen-B runs/stable-s0 ... \
        --side-by-side runs/screen-A/r1-0_g_ema-0 runs/stable-s0

Each argument is a run folder or a sweep folder (its runs). Per run: its settings (config.json)
and every measurement in its metrics.jsonl (Fréchet distance, class KL and the class histogram,
fastgan.evaluate). Writes, between the markers in docs/recipes.md, one table per group of runs
(the folder's name) ranked by the distance at their last common measurement (a long run's columns:
COLUMNS), and docs/recipes.png:
the Fréchet distance and class KL of every run against iterations (log scale). `--compare
LABEL=RUNS ...` (a column per label, comma-separated run folders) prints the README's tables instead; `--print FOLDER...`
prints the tables of those folders' runs and writes nothing (`--table FOLDER...`: one table of
them all); `--curves OUT.png FOLDER...` draws
only those folders' curves into OUT.png. With --side-by-side SEED
STABLE (two run folders): docs/recipes-grids.png, their sample grids at 30,000, 300,000 and
1,000,000 iterations (those the runs have reached), a row per recipe. `--compare ... --sets N
--at ITER[,ITER...]` measures each run's checkpoints at those iterations again, on N sets of
10,000 samples (`fastgan evaluate --repeats N`), and prints each one's mean ± standard deviation.
"""

import json
import sys
from pathlib import Path

import numpy as np

from fastgan.atomic import write_text
from fastgan.metrics import read_records

DOCS = Path(__file__).resolve().parent
START, END = "<!-- recipes:start (docs/make_recipes.py) -->", "<!-- recipes:end -->"
SETTINGS = ("r1", "r1_every", "g_ema", "g_ema_rel", "lr_d", "lr_g", "beta1", "lr_decay", "decay_start", "decay_floor", "seed",
            "batch_size")


def runs_in(folder):
    """[(group, name, settings, measurements)] of a run folder or of a sweep folder's runs."""
    folder = Path(folder)
    if (folder / "sweep.json").is_file():
        names = [r["name"] for r in json.loads((folder / "sweep.json").read_text())["runs"]]
        return [(folder.name, name, *_read(folder / name)) for name in names]
    return [(folder.name, folder.name, *_read(folder))]


def _read(run):
    cfg = json.loads((run / "config.json").read_text())
    before = {"r1_every": 1, "g_ema_rel": 0.0, "decay_floor": 0.0}  # runs from before an option had its default
    settings = {k: cfg.get(k, before.get(k)) for k in SETTINGS}
    for k in ("lr_d", "lr_g"):
        settings[k] = cfg["lr"] if settings[k] is None else settings[k]
    return settings, [m for m in read_records(run / "metrics.jsonl") if "fd" in m]


def _fmt(v):
    return "—" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


# the iterations a long run's table columns (and the README's rows) show; the curves show them all
COLUMNS = (25_000, 50_000, 100_000, 200_000, 300_000, 500_000, 750_000, 1_000_000)
ROWS = (10_000, 20_000, 25_000, 30_000, 50_000, 100_000, 200_000, 300_000, 400_000, 500_000, 600_000, 700_000,
        800_000, 900_000, 1_000_000)
SHOW_ALL = 12  # up to this many measurements, every one is shown


def shown(iters, keep):
    """The iterations to show: all of few; else those in keep, and the last."""
    return iters if len(iters) <= SHOW_ALL else [it for it in iters if it in keep or it == iters[-1]]


def worst_after(evals, start=100_000):
    """The largest ratio of a distance measured after `start` to the best measured up to it."""
    worst, best = None, float("inf")
    for m in evals:
        best = min(best, m["fd"])
        if m["iter"] > start:
            worst = max(worst or 0.0, m["fd"] / best)
    return worst


def table(runs):
    """Markdown: one row per run, its distance at the shown measurements, the best, the largest
    ratio to the best so far after 100k, and the worst digit share and class KL at the last."""
    iters = sorted({m["iter"] for *_, evals in runs for m in evals})
    last = max((it for it in iters if all(any(m["iter"] == it for m in e) for *_, e in runs)), default=None)
    iters = shown(iters, COLUMNS)

    def at(evals, it):
        return next((m for m in evals if m["iter"] == it), None)

    ranked = sorted(runs, key=lambda r: (at(r[3], last) or {"fd": float("inf")})["fd"] if last else 0)
    head = ["run", *SETTINGS, *(f"FD {it // 1000}k" for it in iters), "best FD", "worst / best so far after 100k",
            "rarest digit", "class KL"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, name, settings, evals in ranked:
        fds = [at(evals, it) for it in iters]
        final = evals[-1] if evals else None
        best = min(evals, key=lambda m: m["fd"]) if evals else None
        worst = worst_after(evals)
        cells = [name, *(_fmt(settings[k]) for k in SETTINGS), *(_fmt(m["fd"]) if m else "—" for m in fds),
                 f"{best['fd']:.1f} @ {best['iter'] // 1000}k" if best else "—",
                 f"{worst:.2f}×" if worst else "—",
                 f"{min(final['classes']):.1%}" if final else "—", _fmt(final["class_kl"]) if final else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(groups, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5.5))
    ax_fd, ax_kl = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colors = iter(np.tile(np.array(__import__("matplotlib").colormaps["tab20"].colors), (8, 1)))
    for group, runs in groups.items():
        for _, name, _, evals in runs:
            if not evals:
                continue
            c = next(colors)
            its = [m["iter"] for m in evals]
            label = name if len(runs) == 1 else f"{group}/{name}"
            ax_fd.plot(its, [m["fd"] for m in evals], marker="o", ms=3, color=c, label=label)
            ax_kl.plot(its, [m["class_kl"] for m in evals], marker="o", ms=3, color=c)
    ax_fd.set_yscale("log")
    for ax in (ax_fd, ax_kl):  # the 50k screens and the 1M runs on one axis
        ax.set_xscale("log")
    ax_fd.set(xlabel="iteration (log)", ylabel="Fréchet distance (log)", title="sample quality (lower is better)")
    ax_kl.set(xlabel="iteration (log)", ylabel="class KL vs uniform", title="digit coverage (0: all ten equally)")
    for ax in (ax_fd, ax_kl):
        ax.grid(alpha=0.3)
    fig.legend(loc="lower center", ncol=4, fontsize=6, bbox_to_anchor=(0.5, -0.02))
    fig.subplots_adjust(bottom=0.4)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=90, bbox_inches="tight")


SIDE_BY_SIDE = (30_000, 300_000, 1_000_000)


def side_by_side(runs, path):
    """A row of grids per run (its label and FD at each iteration shown), at SIDE_BY_SIDE."""
    from matplotlib import image as mimage
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3 * len(SIDE_BY_SIDE), 3.3 * len(runs)))
    for row, (label, run) in enumerate(runs):
        evals = {m["iter"]: m for m in read_records(Path(run) / "metrics.jsonl") if "fd" in m}
        for col, it in enumerate(SIDE_BY_SIDE):
            ax = fig.add_subplot(len(runs), len(SIDE_BY_SIDE), row * len(SIDE_BY_SIDE) + col + 1)
            ax.set_axis_off()
            grid = Path(run) / "samples" / f"{it:07d}.png"
            fd = f", FD {evals[it]['fd']:.1f}" if it in evals else ""
            if grid.is_file():
                ax.imshow(mimage.imread(grid))
                ax.set_title(f"{label} @ {it:,}{fd}", fontsize=9)
            else:
                ax.set_title(f"{label} @ {it:,}: not run this far", fontsize=9)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=80, bbox_inches="tight")


def _header(columns):
    """The two header lines of a table with a column per label ({label: run folders})."""
    return ["| iteration | " + " | ".join(f"{label} ({', '.join(Path(r).name for r in runs)})"
                                         for label, runs in columns.items()) + " |",
            "|---:|" + "---|" * len(columns)]


def compare_table(columns):
    """Markdown for the README: per measured iteration, FD and the rarest digit's share of each
    run of each column ({label: run folders}: a column per recipe, its runs separated by ·)."""
    def cells(runs, it):
        out = []
        for run in runs:
            m = next((m for m in read_records(Path(run) / "metrics.jsonl") if m.get("iter") == it and "fd" in m), None)
            out.append(f"{m['fd']:.1f} ({min(m['classes']):.1%})" if m else "—")
        return " · ".join(out)

    every = [run for runs in columns.values() for run in runs]
    iters = shown(sorted({m["iter"] for run in every for m in read_records(Path(run) / "metrics.jsonl") if "fd" in m}),
                  ROWS)
    lines = _header(columns)
    lines += [f"| {it:,} | " + " | ".join(cells(runs, it) for runs in columns.values()) + " |" for it in iters]
    return "\n".join(lines) + "\n\nFréchet distance (the rarest digit's share of samples)."


def remeasured_table(columns, iters, sets):
    """Markdown: per iteration in `iters`, each run's checkpoint of that iteration measured on
    `sets` sets of samples (fastgan.evaluate.Evaluator.repeated): the Fréchet distance's mean ±
    the sets' standard deviation, the runs of a column separated by ·, then their mean."""
    import torch

    from fastgan import checkpoint
    from fastgan.data import load_images
    from fastgan.evaluate import Evaluator

    arrays, _ = load_images("mnist", None, None, None, log=lambda m: None)
    evaluator = Evaluator(arrays, "mnist", None, torch.device("cpu"), log=lambda m: None)

    def cell(runs, it):
        fds = []
        for run in runs:
            path = Path(run) / "checkpoints" / f"{it:07d}.pt"
            fds.append(evaluator.repeated(checkpoint.g_weights(checkpoint.load(path)), sets) if path.is_file() else None)
        shown = " · ".join("—" if r is None else f"{r['fd']:.2f} ± {r['fd_sd']:.2f}" for r in fds)
        measured = [r["fd"] for r in fds if r is not None]
        return shown + (f" (mean {np.mean(measured):.2f})" if len(measured) > 1 else "")

    lines = _header(columns)
    lines += [f"| {it:,} | " + " | ".join(cell(runs, it) for runs in columns.values()) + " |" for it in iters]
    return "\n".join(lines) + f"\n\nFréchet distance: the mean ± the standard deviation over {sets} sets of 10,000 samples."


def groups_of(folders):
    """{group: [(group, name, settings, measurements)]} of the runs in `folders` (runs_in)."""
    groups = {}
    for folder in folders:
        for group, *run in runs_in(folder):
            groups.setdefault(group, []).append((group, *run))
    return groups


def main(folders, pair=None):
    groups = groups_of(folders)
    doc = DOCS / "recipes.md"
    text = doc.read_text()
    if START not in text or END not in text:
        sys.exit(f"error: {doc} lacks the markers {START} ... {END}")
    tables = "\n\n".join(f"**{group}**\n\n{table(runs)}" for group, runs in groups.items())
    write_text(doc, text[: text.index(START) + len(START)] + "\n" + tables + "\n" + text[text.index(END):])
    plot(groups, DOCS / "recipes.png")
    print(f"wrote {doc} and {DOCS / 'recipes.png'}")
    if pair:
        side_by_side([("seed", pair[0]), ("stable", pair[1])], DOCS / "recipes-grids.png")
        print(f"wrote {DOCS / 'recipes-grids.png'}")
    return 0


def parse(argv):
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Each FOLDER is a run folder or a sweep folder (its runs).")
    ap.add_argument("folders", nargs="*", metavar="FOLDER", help="the runs whose tables go into docs/recipes.md")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--compare", nargs="+", metavar="LABEL=RUN[,RUN...]",
                      help="print the README's table instead: a column per label, e.g. \"stable=runs/s0,runs/s1\"")
    ap.add_argument("--sets", type=int, default=0, metavar="N",
                    help="with --compare and --at: measure the checkpoints again on N sets of samples (mean ± sd)")
    ap.add_argument("--at", metavar="ITER[,ITER...]", help="with --sets: the iterations whose checkpoints to measure")
    mode.add_argument("--curves", metavar="OUT.png", help="draw only the FOLDERs' curves into OUT.png")
    mode.add_argument("--table", action="store_true", help="print one table of all the FOLDERs' runs; write nothing")
    mode.add_argument("--print", action="store_true", help="print a table per FOLDER; write nothing")
    mode.add_argument("--side-by-side", nargs=2, metavar=("SEED", "STABLE"),
                      help="also draw docs/recipes-grids.png: the two runs' grids at 30k, 300k and 1M")
    args = ap.parse_args(argv)
    if args.compare and not all("=" in a for a in args.compare):
        ap.error("--compare takes LABEL=RUN[,RUN...] for each column, e.g. \"stable=runs/s0,runs/s1\"")
    if bool(args.sets) != bool(args.at) or (args.sets and (not args.compare or args.sets < 2)):
        ap.error("--sets N (2 or more) and --at ITER[,ITER...] go together, with --compare")
    if not args.compare and not args.folders:
        ap.error("give the run or sweep folders to read")
    for folder in args.folders + [r for a in args.compare or () for r in a.split("=", 1)[1].split(",")]:
        if not (Path(folder) / "sweep.json").is_file() and not (Path(folder) / "config.json").is_file():
            ap.error(f"{folder} is not a run folder or a sweep folder (it has no config.json or sweep.json)")
    return args


if __name__ == "__main__":
    args = parse(sys.argv[1:])
    if args.sets:
        print(remeasured_table({a.split("=", 1)[0]: a.split("=", 1)[1].split(",") for a in args.compare},
                               [int(i) for i in args.at.split(",")], args.sets))
    elif args.compare:
        print(compare_table({a.split("=", 1)[0]: a.split("=", 1)[1].split(",") for a in args.compare}))
    elif args.curves:
        plot(groups_of(args.folders), args.curves)
        print(f"wrote {args.curves}")
    elif args.table:
        print(table([(g, *r) for f in args.folders for g, *r in runs_in(f)]))
    elif args.print:
        print("\n\n".join(table([(g, *r) for g, *r in runs_in(f)]) for f in args.folders))
    else:
        sys.exit(main(args.folders, args.side_by_side))
