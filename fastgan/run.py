"""The training run: data, model, the chosen backend's step, and everything around it
(sample grids, checkpoints, metrics, progress, resume, Ctrl-C).

The hot loop only enqueues device work. Once per log interval the four losses are copied to
pinned host memory without waiting; the host reads them when the copy's event has completed.
Sample grids and checkpoints are snapshotted on the device and written by one background thread.
"""

import json
import math
import os
import queue
import signal
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint
from .config import Config
from .data import Batcher, images_to_tensor, load_dataset
from .errors import FastganError
from .model import SHAPES, Z_DIM, AdamStep, generator, init_params
from .plots import LOSS_KEYS, read_metrics, save_grid, save_losses

RESTORED_FROM_CHECKPOINT = ("batch_size", "lr", "beta1", "seed", "dataset")


def pick_device(name, log):
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        raise FastganError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    log("notice: no CUDA device found; training on the CPU (slow)")
    return torch.device("cpu")


class StepLoop:
    """The eager and fused backends: one `AdamStep` call per iteration, batches from the Batcher."""

    def __init__(self, step, batcher, backend):
        self.step, self.batcher, self.backend = step, batcher, backend
        self.params, self.ops = step.params, step.ops

    def advance(self, n):
        for _ in range(n):
            losses = self.step(*self.batcher.next())
        return losses

    def adam_state(self):
        return self.step.adam_state()

    def load_adam_state(self, state):
        self.step.load_adam_state(state)


def pick_backend(name, device):
    if name == "auto":
        return "graph" if device.type == "cuda" else "eager"
    return name


def make_trainer(backend, params, cfg, batcher, device, log=print):
    """An object with advance(n) -> last losses, params, ops, backend (its name), adam_state(),
    load_adam_state(). `auto` falls back to eager if the graph backend fails at start-up."""
    if backend == "eager":
        return StepLoop(AdamStep(params, cfg.lr, betas=cfg.betas), batcher, "eager")
    if device.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton runs CPU tensors only in its interpreter
    try:
        import kernels
    except ImportError as e:
        raise FastganError(f"--backend {backend} needs Triton ({e}); install it or use --backend eager")
    if backend == "fused":
        return StepLoop(AdamStep(params, cfg.lr, kernels.OPS, betas=cfg.betas), batcher, "fused")
    from .graph import GraphTrainer

    trainer = GraphTrainer(params, cfg.lr, batcher, cfg.iters_per_replay, betas=cfg.betas)
    try:
        trainer.warm_up()  # compile, capture and check the graph now, while nothing else uses the GPU
    except Exception as e:  # a compile, capture or replay-check failure: say it in one line
        what = f"{type(e).__name__}: {_first_line(e)}"
        if cfg.backend != "auto":
            raise FastganError(f"--backend graph failed at start-up ({what}); try --backend eager") from None
        log(f"notice: the CUDA-graph backend failed at start-up ({what}); training with the eager backend instead")
        return StepLoop(AdamStep(params, cfg.lr, betas=cfg.betas), batcher, "eager")
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


class NonFiniteLoss(FastganError):
    """A logged loss or a parameter about to be saved was NaN or infinite."""


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj


def _save_state(state, path):
    state = _to_cpu(state)
    bad = [k for k, t in state["params"].items() if not torch.isfinite(t).all()]
    if bad:
        raise NonFiniteLoss(f"parameters {', '.join(bad)} are non-finite at iteration {state['iter']}; not saved")
    checkpoint.save(path, state)


def _write_checkpoint(state, folder, keep):
    _save_state(state, folder / checkpoint.ckpt_name(state["iter"]))
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
    save_grid(samples.cpu().numpy(), path)


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


class _LossLog:
    """Copies losses to the host asynchronously and writes metrics when they have arrived."""

    def __init__(self, out, device, start_iter, bar, print_every, say):
        self.device = device
        self.say = say
        self.pending = deque()
        self.bar = bar
        self.print_every = print_every
        self.metrics_path = out / "metrics.jsonl"
        kept = [m for m in read_metrics(self.metrics_path) if m["iter"] <= start_iter]
        with open(self.metrics_path, "w") as f:
            f.writelines(json.dumps(m) + "\n" for m in kept)
        self.file = open(self.metrics_path, "a")
        self.last = (start_iter, time.perf_counter())
        self.extra = queue.SimpleQueue()  # records from other threads (sample metrics)
        self.best_fd = min((m["fd"] for m in kept if "fd" in m), default=math.inf)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=start_iter + 1)
        except ImportError:
            pass

    def push(self, it, losses):
        cuda = self.device.type == "cuda"
        host = torch.empty(4, pin_memory=cuda)
        host.copy_(losses, non_blocking=cuda)
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record()
        now = time.perf_counter()
        its = (it - self.last[0]) / max(now - self.last[1], 1e-9)
        self.bar.update(it - self.last[0])
        self.last = (it, now)
        self.pending.append((it, host, event, its))
        self.drain()

    def _write(self, record):
        self.file.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "iter" and isinstance(v, float):
                    self.tb.add_scalar(k, v, record["iter"])

    def drain(self, wait=False):
        while self.pending:
            it, host, event, its = self.pending[0]
            if event is not None:
                if not wait and not event.query():
                    break
                event.synchronize()
            self.pending.popleft()
            values = dict(zip(LOSS_KEYS, host.tolist()))
            if not all(math.isfinite(v) for v in values.values()):
                shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                raise NonFiniteLoss(f"non-finite loss at iteration {it} ({shown}); training stopped")
            self._write({"iter": it, **values, "its_per_s": its})
            self.bar.set_postfix(d_loss=f"{values['d_loss']:.3f}", g_loss=f"{values['g_loss']:.3f}", refresh=False)
            if it % self.print_every == 0:
                self.say(f"Iter: {it}; D loss: {values['d_loss']:.4f}; G loss: {values['g_loss']:.4f}")
        while not self.extra.empty():
            record = self.extra.get()
            self._write(record)
            self.say(f"Iter: {record['iter']}; Fréchet distance {record['fd']:.3f} (floor {record['fd_floor']:.3f}); "
                     f"score {record['score']:.2f}; class KL {record['class_kl']:.3f}")

    def close(self):
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class _StopOnSigint:
    """First Ctrl-C asks the loop to stop after a checkpoint; a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self.previous)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _resume_state(cfg, log):
    path = checkpoint.resolve(cfg.resume)
    state = checkpoint.load(path)
    saved = state.get("config", {})
    for key in RESTORED_FROM_CHECKPOINT:
        if key in saved and getattr(cfg, key) != saved[key]:
            log(f"notice: --{key.replace('_', '-')} {saved[key]!r} taken from the checkpoint")
            setattr(cfg, key, saved[key])
    if cfg.out is None:
        cfg.out = str(path.parent.parent if path.parent.name == "checkpoints" else path.parent)
    log(f"resuming from {path} at iteration {state['iter']}")
    return state


def train(cfg: Config, log=print, show_progress=True):
    """Run (or continue) a training run; returns the run folder."""
    cfg.validate()
    state = _resume_state(cfg, log) if cfg.resume else None
    out = Path(cfg.out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    if out.exists() and not out.is_dir():
        raise FastganError(f"--out {out} is a file; give a folder for the run")
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
        with torch.no_grad():
            for k in SHAPES:
                params[k].copy_(state["params"][k])
        trainer.load_adam_state(state["adam"])
        batcher.load_state_dict(state["sampler"])
        start = int(state["iter"])
    if start >= cfg.iters:
        log(f"nothing to do: the checkpoint is at iteration {start} and --iters is {cfg.iters}")
        return out

    for sub in ("samples", "checkpoints"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps({**cfg.to_dict(), "backend": backend, "device": str(device)}, indent=2))
    ckpt_dir = out / "checkpoints"
    log(f"training {cfg.iters - start} iterations on {device} ({backend} backend), writing to {out}")

    def snapshot(it):
        return {
            "iter": it,
            "params": {k: v.detach().clone() for k, v in params.items()},
            "adam": trainer.adam_state(),
            "sampler": batcher.state_dict(),
            "config": cfg.to_dict(),
        }

    def sample(it):
        with torch.no_grad():
            writer.submit(_write_grid, generator(params, z_fixed, trainer.ops), out / "samples" / f"{it:07d}.png")

    evaluator = None
    if cfg.iters // cfg.eval_every > start // cfg.eval_every:  # at least one measurement ahead
        from .evaluate import Evaluator

        evaluator = Evaluator(data, cfg.dataset, cfg.data_dir, device, seed=cfg.seed, log=log)
    writer = _Background()
    bar = tqdm(total=cfg.iters, initial=start, unit="it", disable=not show_progress, dynamic_ncols=True)
    losslog = _LossLog(out, device, start, bar, cfg.sample_every, bar.write if show_progress else log)
    measure = evaluator and _BestByDistance(evaluator, ckpt_dir / "best.pt", losslog.best_fd, losslog.extra)
    it = start
    failed = True
    # On the CPU, Adam's second moments of rarely-used weights decay into denormal floats, which
    # x86 cores handle ~100x slower: 13% of D's were denormal after 261k seed iterations, and
    # training ran 3x slower than with them flushed to zero. Flushing moves no weight by more
    # than ~1e-30 (a denormal moment over eps = 1e-8). Restored when the loop ends.
    flush = device.type == "cpu" and torch.set_flush_denormal(True)
    try:
        with _StopOnSigint() as stop:
            while it < cfg.iters and not stop.requested:
                n = min(cfg.iters_per_replay, next_stop(it, cfg) - it)
                losses = trainer.advance(n)
                it += n
                if it % cfg.log_every == 0 or it == cfg.iters:
                    losslog.push(it, losses)
                    writer.check()
                if it % cfg.sample_every == 0:
                    sample(it)
                save_now = it % cfg.ckpt_every == 0
                measure_now = measure and it % cfg.eval_every == 0
                if save_now or measure_now:
                    state = snapshot(it)  # one device copy serves the checkpoint and the measurement
                    if save_now:
                        writer.submit(_write_checkpoint, state, ckpt_dir, cfg.keep)
                    if measure_now:
                        writer.submit(measure, state)
            if losslog.last[0] != it:
                losslog.push(it, losses)
            if it % cfg.sample_every:
                sample(it)
            if it % cfg.ckpt_every:
                writer.submit(_write_checkpoint, snapshot(it), ckpt_dir, cfg.keep)
            writer.close()
            losslog.drain(wait=True)
            failed = False
            if stop.requested:
                log(f"\nstopped at iteration {it}; resume with: python train.py --resume {out}")
    except NonFiniteLoss as e:
        writer.close(raise_errors=False)
        good = checkpoint.list_checkpoints(ckpt_dir)
        where = f"the last good checkpoint is {good[-1]}" if good else "no checkpoint had been written yet"
        raise FastganError(f"{e}; {where}") from None
    finally:
        if flush:
            torch.set_flush_denormal(False)
        bar.close()
        losslog.close()
        if failed:
            writer.close(raise_errors=False)
    save_losses(read_metrics(out / "metrics.jsonl"), out / "losses.png")
    return out
