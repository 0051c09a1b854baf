"""The training run: data, model, the chosen backend's step, and everything around it
(sample grids, checkpoints, metrics, progress, resume, Ctrl-C).

The hot loop only enqueues device work. Once per log interval the four losses are copied to
pinned host memory without waiting; the host reads them when the copy's event has completed.
Sample grids and checkpoints are snapshotted on the device and written by one background thread.
"""

import json
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint, runfolder
from .config import DEFAULT_ITERS, Config
from .data import Batcher, images_to_tensor, load_dataset
from .errors import FastganError, os_error
from .metrics import LossLog, NonFiniteLoss, atomic_write_text, read_records
from .model import Z_DIM, AdamStep, generator, init_params
from .plots import save_grid, save_losses

RESTORED_FROM_CHECKPOINT = ("batch_size", "lr", "beta1", "seed", "dataset")
CHECK_SECONDS = 0.25  # the eager and fused backends check for Ctrl-C about this often


def pick_device(name, log):
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        raise FastganError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    log("notice: no CUDA device found; training on the CPU (slow)")
    return torch.device("cpu")


class EagerTrainer:
    """The plain-PyTorch reference as a trainer: one `AdamStep` call per iteration."""

    backend = "eager"

    def __init__(self, step, batcher):
        self.step, self.batcher = step, batcher
        self.params, self.ops = step.params, step.ops

    def advance(self, n):
        for _ in range(n):
            losses = self.step(*self.batcher.next())
        return losses

    def state_dict(self):
        return self.step.state_dict()

    def load_state_dict(self, state):
        self.step.load_state_dict(state)


def pick_backend(name, device):
    if name == "auto":
        return "graph" if device.type == "cuda" else "eager"
    return name


def make_trainer(backend, params, cfg, batcher, device, log=print):
    """A trainer: advance(n) -> the last iteration's losses; params, ops, backend (its name);
    state_dict() and load_state_dict() (parameters, Adam moments and step). eager is the
    plain-PyTorch reference; fused and graph are one Triton trainer, launched un-captured or
    replayed from a CUDA graph. `auto` falls back to eager if the graph fails at start-up."""
    if backend == "eager":
        return EagerTrainer(AdamStep(params, cfg.lr, betas=cfg.betas), batcher)
    if device.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton runs CPU tensors only in its interpreter
    try:
        import kernels  # noqa: F401  (is Triton there?)
    except ImportError as e:
        raise FastganError(f"--backend {backend} needs Triton ({e}); install it or use --backend eager")
    from .graph import GraphTrainer

    trainer = GraphTrainer(params, cfg.lr, batcher, cfg.iters_per_replay, capture=None if backend == "graph" else False,
                           betas=cfg.betas)
    trainer.backend = backend
    try:
        trainer.warm_up()  # compile, capture and check the graph now, while nothing else uses the GPU
    except Exception as e:  # a compile, capture or replay-check failure: say it in one line
        what = f"{type(e).__name__}: {_first_line(e)}"
        if cfg.backend != "auto":
            raise FastganError(f"--backend graph failed at start-up ({what}); try --backend eager") from None
        log(f"notice: the CUDA-graph backend failed at start-up ({what}); training with the eager backend instead")
        return EagerTrainer(AdamStep(params, cfg.lr, betas=cfg.betas), batcher)
    return trainer


def _first_line(e):
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[0] if lines else "no message"


def next_stop(it, cfg):
    """The next iteration at which something is logged, drawn, saved, measured, or the run ends."""
    every = (cfg.log_every, cfg.sample_every, cfg.ckpt_every, cfg.eval_every)
    return min(cfg.iters, *(it // e * e + e for e in every))


def fixed_noise(seed, device):
    """One noise batch for every sample grid of a run, so grids are comparable over time."""
    gen = torch.Generator().manual_seed(seed + 3)
    return (torch.rand(16, Z_DIM, generator=gen) * 2 - 1).to(device)


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj


def _save_state(state, path, before_replace=None):
    state = _to_cpu(state)
    bad = [k for k, t in state["params"].items() if not torch.isfinite(t).all()]
    if bad:
        raise NonFiniteLoss(f"parameters {', '.join(bad)} are non-finite at iteration {state['iter']}; not saved")
    checkpoint.save(path, state, before_replace)


def _write_checkpoint(state, folder, keep, before_replace):
    _save_state(state, folder / checkpoint.ckpt_name(state["iter"]), before_replace)
    checkpoint.prune(folder, keep)


class _BestByDistance:
    """Measures snapshots in the writer thread (fastgan.evaluate), hands the results to the
    metrics log, and keeps checkpoints/best.pt at the lowest Fréchet distance so far."""

    def __init__(self, evaluator, path, best, results):
        self.evaluator, self.path, self.best, self.results = evaluator, path, best, results

    def __call__(self, state):
        result = {"iter": state["iter"], **self.evaluator(state["params"])}
        if result["fd"] < self.best:
            _save_state(state, self.path)
            self.best = result["fd"]
        self.results.put(result)


def _write_grid(samples, path):
    try:
        save_grid(samples.cpu().numpy(), path)
    except OSError as e:
        raise FastganError(os_error("write", path, e)) from None


class _Background:
    """One writer thread for PNGs and checkpoints; its errors surface on the training thread."""

    def __init__(self):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastgan-writer")
        self.futures = deque()

    def submit(self, fn, *args):
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


class _StopOnSigint:
    """The first Ctrl-C asks the loop to stop after the current chunk (and a checkpoint); a
    second one raises KeyboardInterrupt at once. The handler in place before is restored."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


class Interrupted(FastganError):
    """Ctrl-C during start-up, or a second Ctrl-C: stopped at once (exit code 130)."""


def _resume_state(cfg, log):
    """Load the checkpoint to resume; restore the run's settings (and its target --iters unless
    given); pick the run folder. Returns (checkpoint path, its run folder or None, state)."""
    path = checkpoint.resolve(cfg.resume)
    state = checkpoint.load(path)
    checkpoint.check_resumable(path, state)
    saved = state.get("config", {})
    for key in RESTORED_FROM_CHECKPOINT:
        if key in saved and getattr(cfg, key) != saved[key]:
            log(f"notice: --{key.replace('_', '-')} {saved[key]!r} taken from the checkpoint")
            setattr(cfg, key, saved[key])
    if cfg.iters is None:
        cfg.iters = int(saved.get("iters", DEFAULT_ITERS))  # continue to the run's own target
    home = path.parent.parent if path.parent.name == "checkpoints" else None
    if cfg.out is None:
        if home is None:
            cfg.out = str(runfolder.fresh_folder_beside(path))
            log(f"notice: {path} is not inside a run folder's checkpoints/; resuming into a new run folder, {cfg.out}")
        else:
            cfg.out = str(home)
    log(f"resuming from {path} at iteration {state['iter']}")
    return path, home, state


def train(cfg: Config, log=print, show_progress=True):
    """Run (or continue) a training run; returns the run folder."""
    try:
        return _train(cfg, log, show_progress)
    except KeyboardInterrupt:
        raise Interrupted("interrupted (Ctrl-C) while starting up or shutting down; stopped at once") from None


def _train(cfg, log, show_progress):
    cfg.validate()
    home, state = None, None
    if cfg.resume:
        _, home, state = _resume_state(cfg, log)
    elif cfg.iters is None:
        cfg.iters = DEFAULT_ITERS
    cfg.validate()
    out = Path(cfg.out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    # One owner, one run, writable: checked before any data is loaded.
    resuming_here = home is not None and out.resolve() == home.resolve()
    folder = runfolder.claim(out, resuming=resuming_here)
    try:
        return _train_in(cfg, log, show_progress, out, state)
    finally:
        folder.release()


def _train_in(cfg, log, show_progress, out, state):
    device = pick_device(cfg.device, log)
    backend = pick_backend(cfg.backend, device)
    data = load_dataset(cfg.dataset, cfg.data_dir, log)
    images = images_to_tensor(data["train_images"], device)

    batcher = Batcher(images, cfg.batch_size, cfg.seed)
    trainer = make_trainer(backend, init_params(cfg.seed, device), cfg, batcher, device, log)
    backend = trainer.backend
    params = trainer.params
    z_fixed = fixed_noise(cfg.seed, device)
    start = 0
    if state is not None:
        trainer.load_state_dict(state)
        batcher.load_state_dict(state["sampler"])
        start = int(state["iter"])
    if start >= cfg.iters:
        log(f"nothing to do: the checkpoint is at iteration {start} and --iters is {cfg.iters}")
        return out

    for sub in ("samples", "checkpoints"):
        try:
            (out / sub).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FastganError(os_error("create", out / sub, e)) from None
    atomic_write_text(out / "config.json", json.dumps({**cfg.to_dict(), "backend": backend, "device": str(device)}, indent=2))
    ckpt_dir = out / "checkpoints"
    log(f"training iterations {start + 1}..{cfg.iters} on {device} ({backend} backend), writing to {out}")

    def snapshot(it):
        return {"iter": it, **trainer.state_dict(), "sampler": batcher.state_dict(), "config": cfg.to_dict()}

    def sample(it):
        with torch.no_grad():
            writer.submit(_write_grid, generator(params, z_fixed, trainer.ops), out / "samples" / f"{it:07d}.png")

    def checkpoint_now(it):
        losslog.drain(wait=True)  # every record up to `it` is written before the checkpoint...
        writer.submit(_write_checkpoint, snapshot(it), ckpt_dir, cfg.keep, losslog.fsync)  # ...and synced before its rename

    evaluator = None
    if cfg.iters // cfg.eval_every > start // cfg.eval_every:  # at least one measurement ahead
        from .evaluate import Evaluator

        evaluator = Evaluator(data, cfg.dataset, cfg.data_dir, device, seed=cfg.seed, log=log)
    writer = _Background()
    bar = tqdm(total=cfg.iters, initial=start, unit="it", disable=not show_progress, dynamic_ncols=True)
    losslog = None
    it = start
    failed = True
    # On the CPU, Adam's second moments of rarely-used weights decay into denormal floats, which
    # x86 cores handle ~100x slower: 13% of D's were denormal after 261k seed iterations, and
    # training ran 3x slower than with them flushed to zero. Flushing moves no weight by more
    # than ~1e-30 (a denormal moment over eps = 1e-8). Restored when the loop ends.
    flush = device.type == "cpu" and torch.set_flush_denormal(True)
    # A graph replays K iterations at once; the step-by-step backends take chunks sized to
    # about CHECK_SECONDS, so a Ctrl-C is acted on quickly however slow an iteration is.
    chunk = cfg.iters_per_replay if backend == "graph" else 1
    try:
        with _StopOnSigint() as stop:
            losslog = LossLog(out, device, start, bar, cfg.sample_every, bar.write if show_progress else log, log)
            measure = evaluator and _BestByDistance(evaluator, ckpt_dir / "best.pt", losslog.best_fd, losslog.extra)
            while it < cfg.iters and not stop.requested:
                n = min(chunk, next_stop(it, cfg) - it)
                t0 = time.perf_counter()
                losses = trainer.advance(n)
                if backend != "graph":
                    rate = n / max(time.perf_counter() - t0, 1e-9)
                    chunk = max(1, min(cfg.iters_per_replay, int(rate * CHECK_SECONDS)))
                it += n
                if it % cfg.log_every == 0 or it == cfg.iters:
                    losslog.push(it, losses)
                    writer.check()
                if it % cfg.sample_every == 0:
                    sample(it)
                save_now = it % cfg.ckpt_every == 0
                measure_now = measure and it % cfg.eval_every == 0
                if save_now:
                    checkpoint_now(it)
                if measure_now:
                    writer.submit(measure, snapshot(it))
            if losslog.last[0] != it:
                losslog.push(it, losses)
            if it % cfg.sample_every:
                sample(it)
            if it % cfg.ckpt_every:
                checkpoint_now(it)
            writer.close()
            losslog.drain(wait=True)
            failed = False
            if stop.requested:
                log(f"\nstopped at iteration {it}; continue with: python train.py --resume {out}")
    except KeyboardInterrupt:
        writer.close(raise_errors=False)  # a checkpoint being written is finished, not torn
        raise Interrupted(f"interrupted at once (second Ctrl-C) near iteration {it}, without a stop checkpoint; "
                          f"{_last_good(ckpt_dir)}") from None
    except FastganError as e:
        writer.close(raise_errors=False)
        raise FastganError(f"{e}; {_last_good(ckpt_dir)}") from None
    finally:
        if flush:
            torch.set_flush_denormal(False)
        bar.close()
        if failed:
            writer.close(raise_errors=False)
        if losslog is not None:
            losslog.close()
    try:
        save_losses(read_records(out / "metrics.jsonl"), out / "losses.png")
    except OSError as e:
        raise FastganError(os_error("write", out / "losses.png", e)) from None
    return out


def _last_good(ckpt_dir):
    good = checkpoint.list_checkpoints(ckpt_dir)
    return f"the last good checkpoint is {good[-1]}" if good else "no checkpoint had been written yet"
