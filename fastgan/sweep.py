"""Sweeps: many GANs trained at once, one run folder each, one summary for all.

    fastgan train --seeds 0-7                                    # 8 runs that differ in seed
    fastgan train --sweep "lr=1e-3,2e-4 beta1=0.9,0.5 seed=0-3"  # the cartesian product: 16 runs

Keys: lr, beta1, seed, fastgan.recipes' settings (lr_d, lr_g, r1, r1_every, g_ema, g_ema_rel,
lr_decay, decay_start, decay_floor) and the model's (hidden, conditional); values comma-separated, seeds and
decay starts also as ranges A-B (inclusive, seeds). Batch size and schedule are shared. Run r writes to OUT/<name>/ everything a single run writes;
its name is built from the values as typed (`lr2e-4_beta1-0.5_r1-10_seed3`). OUT holds sweep.json (the spec and the
runs) and, at the end, summary.csv, summary.md and summary.png (each run's best grid).
"""

import csv
import io
import itertools
import json
import math
from pathlib import Path

import numpy as np

from .atomic import replacing, write_text
from .config import MAX_SEED
from .errors import FastganError
from .metrics import read_records
from .model import MAX_HIDDEN
from .plots import LOSS_KEYS
from .recipes import DECAYS, MAX_EMA_REL, net_rates_off, other_ema_off

# The model's keys first: runs that differ in them train in groups, one group after another
# (fastgan.sweep_driver); the others in one trainer.
MODEL_KEYS = ("hidden", "conditional")
KEYS = (*MODEL_KEYS, "lr", "beta1", "lr_d", "lr_g", "r1", "r1_every", "g_ema", "g_ema_rel", "lr_decay", "decay_start",
        "decay_floor", "seed")
INTS = {"decay_start": ("an iteration", 0), "r1_every": ("a whole number of D steps", 1),
        "hidden": ("a width of hidden units", 1)}  # key: (what, least)
BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
SEPARATOR = {"lr": "", "seed": ""}  # in a run's name: lr2e-4, seed3; the others key-value, r1-10
# Each number key's range, as (test, what the error says)
RANGES = {
    "lr": (lambda v: math.isfinite(v) and 0 < v <= 1, "a learning rate must be in (0, 1]"),
    "lr_d": (lambda v: math.isfinite(v) and 0 < v <= 1, "a learning rate must be in (0, 1]"),
    "lr_g": (lambda v: math.isfinite(v) and 0 < v <= 1, "a learning rate must be in (0, 1]"),
    "beta1": (lambda v: 0 <= v < 1, "beta1 must be in [0, 1)"),
    "g_ema": (lambda v: 0 <= v < 1, "an EMA's beta must be in [0, 1) (0: off)"),
    "g_ema_rel": (lambda v: math.isfinite(v) and 0 <= v <= MAX_EMA_REL, f"an EMA's sigma_rel must be in [0, {MAX_EMA_REL}] (0: off)"),
    "r1": (lambda v: math.isfinite(v) and v >= 0, "gamma must be finite and >= 0 (0: off)"),
    "decay_floor": (lambda v: 0 <= v <= 1, "a decay's floor is a fraction in [0, 1]"),
    "hidden": (lambda v: v <= MAX_HIDDEN, f"a width is at most {MAX_HIDDEN}"),
}
SWEEP_FILE = "sweep.json"
MAX_RUNS = 4096  # runs in one sweep: each has its folder, and its parameters on the device


def _too_many(what, n):
    return FastganError(f"{what} makes {n:,} runs; a sweep holds at most {MAX_RUNS:,}: split it, or narrow its ranges")


def _values(key, text):
    tokens = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in tokens):
        raise FastganError(f"--sweep {key}={text!r}: give comma-separated values, e.g. {key}=1e-3,2e-4")
    out = []
    for token in tokens:
        if key == "seed":
            out += _seed_range(token, f"--sweep seed={text}")
            continue
        if key == "lr_decay":
            if token not in DECAYS:
                raise FastganError(f"--sweep lr_decay: {token!r} is not one of {', '.join(DECAYS)}")
            out.append((token, token))
            continue
        if key == "conditional":
            if token.lower() not in BOOLS:
                raise FastganError(f"--sweep conditional: {token!r} is not true or false (or 1, 0)")
            out.append((token, BOOLS[token.lower()]))
            continue
        what, least = INTS.get(key, ("a number", None))
        try:
            value = int(token) if key in INTS else float(token)
        except ValueError:
            raise FastganError(f"--sweep {key}={text!r}: {token!r} is not {what}") from None
        if least is not None and value < least:
            raise FastganError(f"--sweep {key}: {token} is out of range; {what} is >= {least}")
        if key in RANGES and not RANGES[key][0](value):
            raise FastganError(f"--sweep {key}: {token} is out of range; {RANGES[key][1]}")
        out.append((token, value))
    return out


def _seed_range(token, what):
    """'3' -> [('3', 3)]; '0-3' -> [('0', 0), ..., ('3', 3)]."""
    parts = token.split("-")
    try:
        if len(parts) == 1:
            lo = hi = int(parts[0])
        elif len(parts) == 2:
            lo, hi = int(parts[0]), int(parts[1])
        else:
            raise ValueError
    except ValueError:
        raise FastganError(f"{what}: {token!r} is not a seed or a range A-B of seeds") from None
    if lo > hi:
        raise FastganError(f"{what}: the range {token} is empty (its start is after its end)")
    if not 0 <= lo <= hi <= MAX_SEED:
        raise FastganError(f"{what}: seeds must be in 0..{MAX_SEED}")
    if hi - lo + 1 > MAX_RUNS:
        raise _too_many(what, hi - lo + 1)
    return [(str(s), s) for s in range(lo, hi + 1)]


def parse_seeds(text):
    """--seeds "0-7" or "0,3,5-6": runs that differ only in seed."""
    seeds = []
    for token in text.split(","):
        seeds += _seed_range(token.strip(), f"--seeds {text}")
        if len(seeds) > MAX_RUNS:
            raise _too_many(f"--seeds {text}", len(seeds))
    return [{"seed": s, "_tokens": {"seed": t}} for t, s in seeds]


def parse_sweep(text):
    """--sweep "lr=1e-3,2e-4 beta1=0.9,0.5 seed=0-3": the cartesian product of the values."""
    axes = {}
    for part in text.split():
        key, sep, values = part.partition("=")
        if not sep:
            raise FastganError(f"--sweep: {part!r} is not KEY=VALUES (keys: {', '.join(KEYS)})")
        if key not in KEYS:
            raise FastganError(f"--sweep: unknown key {key!r}; the keys are {', '.join(KEYS)}")
        if key in axes:
            raise FastganError(f"--sweep: {key} is given twice")
        axes[key] = _values(key, values)
    if not axes:
        raise FastganError("--sweep is empty; give e.g. \"lr=1e-3,2e-4 seed=0-3\"")
    keys = [k for k in KEYS if k in axes]
    if math.prod(len(axes[k]) for k in keys) > MAX_RUNS:
        raise _too_many(f"--sweep {text}", math.prod(len(axes[k]) for k in keys))
    runs = []
    for combo in itertools.product(*(axes[k] for k in keys)):
        runs.append({**{k: v for k, (_, v) in zip(keys, combo)}, "_tokens": {k: t for k, (t, _) in zip(keys, combo)}})
    return runs


def run_name(run):
    """A readable folder name from the values as typed: lr2e-4_beta1-0.5_seed3."""
    return "_".join(f"{k}{SEPARATOR.get(k, '-')}{run['_tokens'][k]}" for k in KEYS if k in run["_tokens"])


def expand(cfg, runs):
    """[(name, settings)] with each run's value of every key (defaults from cfg); refuses duplicates."""
    out, seen = [], {}
    given = cfg.given_names()
    for run in runs:
        settings = {k: run.get(k, getattr(cfg, k)) for k in KEYS}
        settings.update(other_ema_off(settings, given | set(run)))  # a run's EMA replaces the recipe's, as a flag does
        settings.update(net_rates_off(given | set(run)))  # a run's lr is both nets' rate, as a flag's is
        if settings["g_ema"] and settings["g_ema_rel"]:
            raise FastganError(f"a run has g_ema {settings['g_ema']} and g_ema_rel {settings['g_ema_rel']}: two EMAs "
                               "of G; keep one (0 turns the other off)")
        name = run_name(run)
        key = tuple(settings.values())
        if name in seen or key in seen.values():
            raise FastganError(f"the sweep has two runs with the same settings ({name}); give each value once")
        seen[name] = key
        out.append((name, settings))
    return out


def write_spec(out, spec, runs, cfg):
    write_text(Path(out) / SWEEP_FILE, json.dumps(
        {"spec": spec, "runs": [{"name": n, **s} for n, s in runs], "shared": {
            k: v for k, v in cfg.to_dict().items() if k not in (*KEYS, "out", "resume", "seeds", "sweep")}},
        indent=2))


def read_spec(out):
    path = Path(out) / SWEEP_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FastganError(f"{path} is unreadable ({type(e).__name__}); it is not a fastgan sweep folder") from None


def run_summary(name, settings, folder):
    """One row of the summary from a run folder's metrics."""
    records = read_records(Path(folder) / "metrics.jsonl")
    evals = [m for m in records if "fd" in m]
    losses = [m for m in records if "d_loss" in m]
    best = min(evals, key=lambda m: m["fd"]) if evals else None
    last = evals[-1] if evals else None
    row = {"run": name, **settings,
           "best_fd": best["fd"] if best else None, "best_iter": best["iter"] if best else None,
           "last_fd": last["fd"] if last else None, "class_kl": last.get("class_kl") if last else None,
           "digits": sum(c >= 0.005 for c in last["classes"]) if last and "classes" in last else None,
           "iter": losses[-1]["iter"] if losses else 0}
    row.update({k: losses[-1][k] for k in LOSS_KEYS} if losses else {k: None for k in LOSS_KEYS})
    return row


RESULTS = ["best_fd", "best_iter", "last_fd", "class_kl", "digits", "iter", *LOSS_KEYS]


def columns(rows):
    """The summary's columns: rank, run, lr, beta1, seed, the other keys that differ, results."""
    keys = [k for k in KEYS if k in ("lr", "beta1", "seed") or len({repr(r.get(k)) for r in rows}) > 1]
    return ["rank", "run", *keys, *RESULTS]


def rank(rows):
    """Best Fréchet distance first; runs never measured last."""
    rows = sorted(rows, key=lambda r: (r["best_fd"] is None, r["best_fd"] or 0.0, r["run"]))
    return [{"rank": i + 1, **r} for i, r in enumerate(rows)]


def _fmt(v):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_summary(out, rows, grids=None):
    """summary.csv, summary.md and (given each run's best grid) summary.png in OUT."""
    out = Path(out)
    rows = rank(rows)
    cols = columns(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: r.get(k) for k in cols} for r in rows)
    write_text(out / "summary.csv", buf.getvalue())
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(_fmt(r.get(k)) for k in cols) + " |" for r in rows]
    note = ("\nbest_fd: lowest Fréchet distance measured (iteration best_iter); last_fd, class_kl, digits "
            "(classes drawn in >= 0.5% of samples): at the last measurement; losses at the last logged iteration.\n")
    write_text(out / "summary.md", "\n".join(md) + "\n" + note)
    if grids:
        save_summary_grids(out / "summary.png", [(r, grids[r["run"]]) for r in rows if grids.get(r["run"]) is not None])
    return rows


def save_summary_grids(path, items, per_row=4):
    """Each run's grid image side by side, labelled with its name and best distance."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not items:
        return
    cols = min(per_row, len(items))
    rows = math.ceil(len(items) / cols)
    fig = Figure(figsize=(3 * cols, 3.3 * rows))
    for i, (row, img) in enumerate(items):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(np.asarray(img), cmap="Greys_r", vmin=0, vmax=1)
        ax.set_axis_off()
        fd = f"FD {row['best_fd']:.1f} @ {row['best_iter']:,}" if row["best_fd"] is not None else "not measured"
        ax.set_title(f"#{row['rank']} {row['run']}\n{fd}", fontsize=8)
    FigureCanvasAgg(fig)
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", dpi=80)
