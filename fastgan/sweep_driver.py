"""Training a sweep (fastgan.sweep's runs) in this process or, under torchrun, shared out over
processes: the top folder and sweep.json, each run's folder, resuming, and the summary."""

import dataclasses
from pathlib import Path

from . import distributed, resume, runfolder, sweep
from .backends import pick_device
from .config import Config, default_out
from .errors import FastganError
from .loop import train_runs
from .metrics import read_records


def is_sweep(cfg):
    return bool(cfg.seeds or cfg.sweep or (cfg.resume and (Path(cfg.resume) / sweep.SWEEP_FILE).is_file()))


def _resolve(cfg, log):
    """(the sweep's config, its runs [(name, settings)], the spec text): a resumed sweep keeps its
    runs and every shared setting not given (fastgan.resume.keep_settings), in its own folder."""
    if cfg.resume:
        top = Path(cfg.resume)
        spec = sweep.read_spec(top)
        shared = resume.keep_settings(cfg, spec["shared"], "the sweep", log)
        if cfg.out is not None and Path(cfg.out).resolve() != top.resolve():
            raise FastganError("--resume of a sweep continues it in its own folder; leave out --out")
        # a sweep saved before a key existed ran with its shared value, else with the default
        default = {**Config().to_dict(), **spec["shared"]}
        runs = [(r["name"], {k: r.get(k, default[k]) for k in sweep.KEYS}) for r in spec["runs"]]
        return dataclasses.replace(cfg, **shared, out=str(top)).validate(), runs, spec["spec"]
    if cfg.seeds and cfg.sweep:
        raise FastganError("--seeds and --sweep are two ways to give the runs; use one (--sweep can hold seed=...)")
    cfg = cfg.with_recipe()
    runs = sweep.expand(cfg, sweep.parse_seeds(cfg.seeds) if cfg.seeds else sweep.parse_sweep(cfg.sweep))
    cfg = dataclasses.replace(cfg, iters=cfg.target_iters()).validate()
    return cfg, runs, f"seed={cfg.seeds}" if cfg.seeds else cfg.sweep


def _stopped_before_checkpoint(top):
    """Whether `top` holds a sweep none of whose runs reached a checkpoint (nothing to lose)."""
    return (top / sweep.SWEEP_FILE).is_file() and all(
        not runfolder.holds_run(p) for p in top.iterdir() if p.is_dir())


def _start_sweep_folder(top, spec, runs, cfg, resuming, log):
    """Claim the sweep's top folder (a new sweep needs it empty, or holding a sweep stopped before
    any run's first checkpoint, as a single run's folder may) and write its sweep.json, with the
    settings as resolved: what a resume changed is what the next resume keeps."""
    folder = runfolder.claim(top, resuming=resuming)
    if not resuming and any(p.name != runfolder.LOCK for p in top.iterdir()):
        if not _stopped_before_checkpoint(top):
            folder.release()
            raise FastganError(f"--out {top} is not empty; a sweep starts in a new folder (or --resume {top})")
        log(f"notice: {top} holds a sweep stopped before its first checkpoint (nothing to lose); starting it again")
    sweep.write_spec(top, spec, runs, cfg)
    return folder


def _train_members(cfg, top, runs, resuming, log, show_progress):
    """Claim the given runs' folders and train them: together, or in groups of one model (the
    sweep's model keys: a width, conditioning) one group after another, until a stop; returns
    their summary rows and best grids."""
    groups = {}
    for name, settings in runs:
        groups.setdefault(tuple(settings[k] for k in sweep.MODEL_KEYS), []).append((name, settings))
    folders = []
    try:
        for i, (model, group) in enumerate(groups.items()):
            if len(groups) > 1:
                log(f"group {i + 1} of {len(groups)} (" + ", ".join(f"{k} {v}" for k, v in zip(sweep.MODEL_KEYS, model))
                    + f"): {', '.join(n for n, _ in group)}")
            states = resume.sweep_states(top, group, log) if resuming else [None] * len(group)
            members = []
            for (name, settings), state in zip(group, states):
                folders.append(runfolder.claim(top / name, resuming=resuming, log=log))
                members.append((top / name, dataclasses.replace(cfg, **settings, out=str(top / name), resume=None,
                                                                seeds=None, sweep=None).validate(), state))
            if train_runs(dataclasses.replace(cfg, **dict(zip(sweep.MODEL_KEYS, model))), members, log, show_progress):
                break  # stopped (Ctrl-C): the later groups wait for the resume
        rows = [sweep.run_summary(name, settings, top / name) for name, settings in runs]
        return rows, {name: _best_grid(top / name) for name, _ in runs}
    finally:
        for f in folders:
            f.release()


def train_sweep(cfg, log, show_progress):
    """Several runs in one trainer per process: OUT/<name>/ each, sweep.json and the summary in
    OUT. Under torchrun each rank trains its share; rank 0 owns the top folder and writes the
    summary gathered from every rank; a group restarted by torchrun resumes from checkpoints."""
    rank, size, _ = distributed.world()
    cfg, runs, spec = _resolve(cfg, log if rank == 0 else (lambda m: None))  # a resume's notice: once
    alone = size == 1
    group = distributed.Alone() if alone else distributed.Group(pick_device(cfg.device, lambda m: None))
    lead = group.rank == 0
    say = log if lead else (lambda m: None)  # one voice: rank 0 speaks, the others only fail loudly
    folder = None
    try:
        top = Path(group.broadcast(cfg.out or default_out()))
        restarted = not cfg.resume and distributed.restarted() and (top / sweep.SWEEP_FILE).is_file()
        resuming = bool(cfg.resume) or restarted
        if lead:
            folder = _start_sweep_folder(top, spec, runs, cfg, resuming, say)
            say(f"sweep of {len(runs)} runs in {top}: {', '.join(n for n, _ in runs)}" if alone else
                f"sweep of {len(runs)} runs in {top} over {group.size} processes"
                + (" (restarted by torchrun: continuing from checkpoints)" if restarted else ""))
        group.barrier()  # sweep.json and the top folder exist before any run folder is made
        rows, grids = _train_members(cfg, top, group.share(runs), resuming, say, show_progress and lead)
        gathered = group.gather((rows, grids))
        if lead:
            order = {name: i for i, (name, _) in enumerate(runs)}
            all_rows = sorted((r for rs, _ in gathered for r in rs), key=lambda r: order[r["run"]])
            for row in sweep.write_summary(top, all_rows, {k: v for _, g in gathered for k, v in g.items()})[:3]:
                best = (f"best FD {row['best_fd']:.1f} at {row['best_iter']:,}" if row["best_fd"] is not None
                        else "not measured")
                say(f"#{row['rank']} {row['run']}: {best}")
            say(f"summary: {top / 'summary.md'}")
        group.barrier()
        return top
    finally:
        if folder is not None:
            folder.release()
        group.close()


def _best_grid(folder):
    """The run's grid at its best measurement (else its last grid), as an image array, or None."""
    from matplotlib import image as mimage

    evals = [m for m in read_records(folder / "metrics.jsonl") if "fd" in m]
    grids = sorted((folder / "samples").glob("*.png"))
    if not grids:
        return None
    if evals:
        best = folder / "samples" / f"{min(evals, key=lambda m: m['fd'])['iter']:07d}.png"
        if best.is_file():
            return mimage.imread(best)
    return mimage.imread(grids[-1])
