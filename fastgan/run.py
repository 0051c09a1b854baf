"""`fastgan train`'s entry: one run (new or resumed) or a sweep, from the user's config to
the training loop (fastgan.loop). The config is resolved once (fastgan.resume,
fastgan.sweep_driver), validated, and read-only from then on."""

from pathlib import Path

from . import distributed, resume, runfolder
from .config import Config
from .errors import FastganError
from .interrupt import Interrupted, SigTerm, Terminated
from .loop import train_runs
from .sweep_driver import is_sweep, train_sweep


def train(cfg: Config, log=print, show_progress=True):
    """Run (or continue) a training run or a sweep; returns its folder."""
    try:
        if is_sweep(cfg):
            return train_sweep(cfg, log, show_progress)
        if distributed.world()[1] > 1:
            raise FastganError(f"torchrun started {distributed.world()[1]} processes for a single run, which one "
                               "process trains; run it without torchrun, or give --seeds/--sweep to share runs out")
        cfg, home, state = resume.resolve_run(cfg, log)
        cfg.validate()
        out = Path(cfg.out)
        # One owner, one run, writable: checked before any data is loaded.
        folder = runfolder.claim(out, resuming=home is not None and out.resolve() == home.resolve(), log=log)
        try:
            train_runs(cfg, [(out, cfg, state)], log, show_progress)
            return out
        finally:
            folder.release()
    except SigTerm:
        raise Terminated("terminated (SIGTERM) while starting up or shutting down; stopped at once") from None
    except KeyboardInterrupt:
        raise Interrupted("interrupted (Ctrl-C) while starting up or shutting down; stopped at once") from None
