"""Resolving what a run continues from: the checkpoint and settings of a resumed run, the
checkpoints a resumed sweep's runs share. Returns a new config; the caller's is not changed."""

import dataclasses
from pathlib import Path

from . import checkpoint, runfolder
from .config import Config, default_out
from .errors import FastganError

# What a run is: never changed by a resume. A run saved before a setting existed had its default.
FIXED = ("batch_size", "hidden", "conditional", "dataset", "image_size", "channels", "seed", "lr", "beta1", "recipe", "lr_d", "lr_g", "r1", "r1_every",
         "g_ema", "g_ema_rel", "lr_decay", "decay_start", "decay_floor")
# ... except a decay that starts at or after the checkpoint, where the run had none started yet:
# the learning rates up to the checkpoint are the same, so the run continues as exactly the run
# that had the new decay from the start (a late decay branched from a long run).
DECAY = ("lr_decay", "decay_start", "decay_floor")
# What a resume may change when given (the target, the schedule, where and how it trains); kept
# from the run when not given.
CHANGEABLE = ("iters", "log_every", "sample_every", "ckpt_every", "keep", "eval_every", "iters_per_replay",
              "device", "backend", "precision", "data_dir")


def decay_not_started(settings, at):
    """Whether the decay of `settings` (lr_decay from decay_start; its floor only shapes what comes
    after) leaves the learning rates of iterations 1..at whole."""
    return settings["lr_decay"] == "none" or settings["decay_start"] >= at


def keep_settings(cfg, saved, what, log, at=None):
    """The settings of a run (or sweep) being resumed: `saved`'s for every setting not given,
    the given ones where a resume may change them (said in one notice); FastganError if a given
    one would change what the run is. With `at` (the checkpoint's iteration), a new decay
    (DECAY) is taken where neither it nor the run's has started by then."""
    given = cfg.given_names()
    changed = [k for k in FIXED if k in given and k in saved and getattr(cfg, k) != saved[k]]
    if at is not None and any(k in changed for k in DECAY):
        new = {k: getattr(cfg, k) if k in given else saved[k] for k in DECAY}
        if not (decay_not_started(new, at) and decay_not_started(saved, at)):
            raise FastganError(" ".join(f"--{k.replace('_', '-')} {v}" for k, v in new.items()) + f" differs from "
                               f"{what}'s: a resume may add or move a decay only where it and the run's own start at "
                               f"or after the checkpoint's iteration ({at}); give --decay-start {at} or later, or "
                               "start a new run")
        log(f"notice: a decay added on resume at iteration {at}, before it starts (the run is as if it had it from "
            "the start): " + ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} -> {v!r}"
                                       for k, v in new.items() if saved[k] != v))
        changed = [k for k in changed if k not in DECAY]
    if changed:
        k = changed[0]
        raise FastganError(f"--{k.replace('_', '-')} {getattr(cfg, k)!r} differs from {what}'s {saved[k]!r}: a "
                           f"resume keeps {', '.join('--' + f.replace('_', '-') for f in FIXED)}; drop the flag, "
                           "or start a new run")
    overrides = [k for k in CHANGEABLE if k in given and k in saved and getattr(cfg, k) != saved[k]]
    if overrides:
        log("notice: changed on resume: " + ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} -> {getattr(cfg, k)!r}"
                                                      for k in overrides))
    return {k: saved[k] for k in FIXED + CHANGEABLE if k in saved and k not in given}


def resolve_run(cfg, log):
    """(the run's config, the run folder it continues or None, its checkpoint state or None) for
    a new run or `--resume`: a resumed run keeps every setting not given (`keep_settings`) and
    continues in its own folder."""
    if not cfg.resume:
        return dataclasses.replace(cfg.with_recipe(), iters=cfg.target_iters(), out=cfg.out or default_out()), None, None
    if Path(cfg.resume).is_dir() and runfolder.holds_run(cfg.resume) == 0:
        raise FastganError(f"{cfg.resume} holds a run stopped before its first checkpoint: nothing to resume; start "
                           "it again with the command that made it (without --resume)")
    path = checkpoint.resolve(cfg.resume)
    state = checkpoint.load(path)
    checkpoint.check_resumable(path, state)
    defaults = Config().to_dict()  # a run saved before a setting existed had its default
    saved = {**{k: defaults[k] for k in FIXED}, **state.get("config", {}),  # and its networks' own shape:
             "hidden": checkpoint.hidden(state), "conditional": bool(checkpoint.class_names(state))}
    restored = keep_settings(cfg, saved, "the run", log, at=int(state["iter"]))
    iters = restored.pop("iters", cfg.target_iters())  # the run's own target, unless given
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
