"""Resolving what a run continues from: the checkpoint and settings of a resumed run, the
checkpoints a resumed sweep's runs share. Returns a new config; the caller's is not changed."""

import dataclasses
from pathlib import Path

from . import checkpoint, runfolder
from .config import DEFAULT_ITERS, default_out
from .errors import FastganError

RESTORED_FROM_CHECKPOINT = ("batch_size", "lr", "beta1", "seed", "dataset")


def resolve_run(cfg, log):
    """(the run's config, the run folder it continues or None, its checkpoint state or None) for
    a new run or `--resume`: a resumed run keeps its settings and (unless --iters is given) its
    target, and continues in its own folder."""
    if not cfg.resume:
        return dataclasses.replace(cfg, iters=DEFAULT_ITERS if cfg.iters is None else cfg.iters,
                                   out=cfg.out or default_out()), None, None
    path = checkpoint.resolve(cfg.resume)
    state = checkpoint.load(path)
    checkpoint.check_resumable(path, state)
    saved = state.get("config", {})
    restored = {}
    for key in RESTORED_FROM_CHECKPOINT:
        if key in saved and getattr(cfg, key) != saved[key]:
            log(f"notice: --{key.replace('_', '-')} {saved[key]!r} taken from the checkpoint")
            restored[key] = saved[key]
    iters = cfg.iters if cfg.iters is not None else int(saved.get("iters", DEFAULT_ITERS))  # the run's own target
    home = path.parent.parent if path.parent.name == "checkpoints" else None
    out = cfg.out
    if out is None:
        if home is None:
            out = str(runfolder.fresh_folder_beside(path))
            log(f"notice: {path} is not inside a run folder's checkpoints/; resuming into a new run folder, {out}")
        else:
            out = str(home)
    log(f"resuming from {path} at iteration {state['iter']}")
    return dataclasses.replace(cfg, **restored, iters=iters, out=out), home, state


def sweep_states(top, runs, log):
    """Each run's checkpoint at the newest iteration all the runs have (a kill can leave one run a
    checkpoint ahead of another); None for every run if they have none in common (a sweep
    stopped before its first checkpoints starts again from iteration 0)."""
    found = {name: {int(p.stem): p for p in checkpoint.list_checkpoints(Path(top) / name / "checkpoints")}
             for name, _ in runs}
    common = set.intersection(*(set(v) for v in found.values()))
    if not common:
        log(f"notice: the runs in {top} have no checkpoint in common; they start again from iteration 0")
        return [None] * len(runs)
    it = max(common)
    log(f"resuming the sweep in {top} at iteration {it}")
    states = []
    for name, _ in runs:
        path = found[name][it]
        state = checkpoint.load(path)
        checkpoint.check_resumable(path, state)
        states.append(state)
    return states


def load_states(trainer, states):
    """Load each run's state (None: a run starting at 0) into the trainer and its batchers;
    returns the iteration they all start at."""
    starts = set()
    for r, state in enumerate(states):
        if state is not None:
            trainer.load_state_dict(state, r)
            trainer.batchers[r].load_state_dict(state["sampler"])
        starts.add(int(state["iter"]) if state is not None else 0)
    if len(starts) != 1:
        raise FastganError(f"the runs start at different iterations ({sorted(starts)}); resume them one by one")
    return starts.pop()
