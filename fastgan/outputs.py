"""A run's outputs: its folder, config.json, metrics log, sample grids, checkpoints and best.pt,
written by one background thread so the training loop only enqueues device snapshots."""

import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from . import checkpoint
from .atomic import write_text
from .classes import with_labels
from .errors import FastganError, os_error
from .metrics import LossLog, NonFiniteLoss, read_records
from .model import Z_DIM, generator
from .plots import save_grid, save_losses

GRID_COLS = 8  # a conditional model's grid: one row per class, this many samples each


def fixed_noise(seed, device, classes=0):
    """One noise batch for every sample grid of a run, so grids are comparable over time: the seed's
    4 x 4; with C classes, C rows of GRID_COLS (the same noise in every row, with its class's label)."""
    gen = torch.Generator().manual_seed(seed + 3)
    z = torch.rand(16, Z_DIM, generator=gen) * 2 - 1
    if classes:
        z = with_labels(z[:GRID_COLS].repeat(classes, 1), torch.arange(classes).repeat_interleave(GRID_COLS), classes)
    return z.to(device)


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj


def _save_state(state, path, before_replace=None):
    state = _to_cpu(state)
    bad = [k for k, t in {**state["params"], **state.get("ema", {})}.items() if not torch.isfinite(t).all()]
    if bad:
        raise NonFiniteLoss(f"parameters {', '.join(bad)} are non-finite at iteration {state['iter']}; not saved")
    checkpoint.save(path, state, before_replace)


def _write_checkpoint(state, folder, keep, before_replace):
    _save_state(state, folder / checkpoint.ckpt_name(state["iter"]), before_replace)
    checkpoint.prune(folder, keep)


def _write_grid(samples, path, image, rows=4, cols=4):
    try:
        save_grid(samples.cpu().numpy(), path, rows, cols, image=image)
    except OSError as e:
        raise FastganError(os_error("write", path, e)) from None


class Writer:
    """One writer thread for PNGs, checkpoints and measurements; its errors surface on the
    training thread. At most `max_pending` jobs wait (each may hold a device snapshot): past that,
    submitting waits for the oldest, so a writer slower than training slows training instead of
    filling memory."""

    def __init__(self, max_pending=64):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastgan-writer")
        self.futures = deque()
        self.max_pending = max_pending

    def submit(self, fn, *args):
        while len(self.futures) >= self.max_pending:
            self.futures.popleft().result()
        self.futures.append(self.pool.submit(fn, *args))
        self.check()

    def check(self, wait=False):
        while self.futures and (wait or self.futures[0].done()):
            self.futures.popleft().result()

    def close(self, raise_errors=True):
        try:
            self.check(wait=True)
        except Exception:
            if raise_errors:
                raise
        finally:
            self.pool.shutdown(wait=True)


class RunOutputs:
    """One run's folder: config.json, the metrics log, grids of its fixed noise, checkpoints."""

    def __init__(self, out, cfg, state):
        self.out, self.cfg, self.state = Path(out), cfg, state
        self.ckpt_dir = self.out / "checkpoints"
        self.losslog = None  # LossLog, from open_log
        self.z_fixed = None  # (16, Z), or (C * GRID_COLS, Z + C): the grids' noise, from create
        self.image = None  # (C, S, S) of the run's images, from create

    def create(self, backend, device, image, classes=0):
        """Make samples/ and checkpoints/, write config.json (the run's settings and backend)."""
        for sub in ("samples", "checkpoints"):
            try:
                (self.out / sub).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise FastganError(os_error("create", self.out / sub, e)) from None
        write_text(self.out / "config.json",
                          json.dumps({**self.cfg.to_dict(), "backend": backend, "device": str(device)}, indent=2))
        self.z_fixed = fixed_noise(self.cfg.seed, device, classes)
        self.grid = (classes, GRID_COLS) if classes else (4, 4)  # rows, columns
        self.image = image

    def open_log(self, device, start, bar, say, log):
        self.losslog = LossLog(self.out, device, start, bar, self.cfg.sample_every, say, log)

    def sample(self, writer, params, ops, it):
        with torch.no_grad():
            writer.submit(_write_grid, generator(params, self.z_fixed, ops), self.out / "samples" / f"{it:07d}.png",
                          self.image, *self.grid)

    def checkpoint(self, writer, state, keep):
        self.losslog.drain(wait=True)  # every record up to the state's iteration is written before it...
        writer.submit(_write_checkpoint, state, self.ckpt_dir, keep, self.losslog.fsync)  # ...and synced first

    def close(self):
        if self.losslog is not None:
            self.losslog.close()

    def plot_losses(self):
        try:
            save_losses(read_records(self.out / "metrics.jsonl"), self.out / "losses.png")
        except OSError as e:
            raise FastganError(os_error("write", self.out / "losses.png", e)) from None

    def last_good(self):
        good = checkpoint.list_checkpoints(self.ckpt_dir)
        return f"the last good checkpoint is {good[-1]}" if good else "no checkpoint had been written yet"


class BestByDistance:
    """Measures snapshots of every run in the writer thread (fastgan.evaluate, one classifier
    pass for all runs), hands each result to its run's metrics log, and keeps each run's
    checkpoints/best.pt at the lowest Fréchet distance so far."""

    def __init__(self, evaluator, runs):
        self.evaluator, self.runs = evaluator, runs
        self.best = [run.losslog.best_fd for run in runs]

    def __call__(self, states):
        results = self.evaluator.many([checkpoint.g_weights(state) for state in states])
        for r, (run, state, result) in enumerate(zip(self.runs, states, results)):
            result = {"iter": state["iter"], **result}
            if result["fd"] < self.best[r]:
                _save_state(state, run.ckpt_dir / "best.pt")
                self.best[r] = result["fd"]
            run.losslog.extra.put(result)
