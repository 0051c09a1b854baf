"""The training run: data, model, the chosen backend's step, and everything around it
(sample grids, checkpoints, metrics, progress, resume, Ctrl-C).

The hot loop only enqueues device work. Once per log interval the four losses are copied to
pinned host memory without waiting; the host reads them when the copy's event has completed.
Sample grids and checkpoints are snapshotted on the device and written by one background thread.
"""

import dataclasses
import json
import os
import signal
import threading
import time
from collections import deque, namedtuple
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint, distributed, runfolder, sweep
from .config import DEFAULT_ITERS, Config
from .data import Batcher, images_to_tensor, load_dataset
from .errors import FastganError, os_error
from .metrics import LossLog, NonFiniteLoss, atomic_write_text, read_records
from .model import ADAM_BETAS, TORCH_OPS, Z_DIM, AdamStep, generator, init_params
from .plots import save_grid, save_losses

RESTORED_FROM_CHECKPOINT = ("batch_size", "lr", "beta1", "seed", "dataset")
RunInit = namedtuple("RunInit", "params lr beta1 batcher")
CHECK_SECONDS = 0.25  # the eager and fused backends check for Ctrl-C about this often


def pick_device(name, log):
    """The training device: under torchrun, this process's GPU (cuda:LOCAL_RANK)."""
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", distributed.world()[2] % torch.cuda.device_count())
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

    def run_params(self, run=0):
        return self.params

    def state_dict(self, run=0):
        return self.step.state_dict()

    def load_state_dict(self, state, run=0):
        self.step.load_state_dict(state)


class EagerSweep:
    """The reference for a sweep: a loop over runs, each its own EagerTrainer."""

    backend = "eager"
    ops = TORCH_OPS

    def __init__(self, trainers):
        self.trainers = trainers

    def advance(self, n):
        return torch.stack([t.advance(n) for t in self.trainers])

    def run_params(self, run):
        return self.trainers[run].params

    def state_dict(self, run):
        return self.trainers[run].state_dict()

    def load_state_dict(self, state, run):
        self.trainers[run].load_state_dict(state)


def pick_backend(name, device):
    if name == "auto":
        return "graph" if device.type == "cuda" else "eager"
    return name


def make_trainer(backend, runs, cfg, device, log=print):
    """A trainer for `runs`, a list of RunInit (one: an ordinary run; several: a sweep):
    advance(n) -> the last iteration's losses ((4,) for one run, (R, 4) for several);
    run_params(r), ops, backend (its name); state_dict(r) and load_state_dict(state, r)
    (parameters, Adam moments and step). eager is the plain-PyTorch reference (a loop over
    runs); fused and graph are one Triton trainer for all runs, launched un-captured or replayed
    from a CUDA graph. `auto` falls back to eager if the graph fails at start-up."""
    def eager():
        trainers = [EagerTrainer(AdamStep(r.params, r.lr, betas=(r.beta1, ADAM_BETAS[1])), r.batcher) for r in runs]
        return trainers[0] if len(runs) == 1 else EagerSweep(trainers)

    if backend == "eager":
        if cfg.precision != "ieee":
            log(f"notice: --precision {cfg.precision} applies to the Triton backends; the eager backend "
                f"({'auto on a CPU' if cfg.backend == 'auto' else 'eager'}) computes in IEEE fp32")
        return eager()
    if device.type == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton runs CPU tensors only in its interpreter
    try:
        import kernels  # noqa: F401  (is Triton there?)
    except ImportError as e:
        raise FastganError(f"--backend {backend} needs Triton ({e}); install it or use --backend eager")
    from .graph import GraphTrainer, bytes_per_run, runs_that_fit

    one = len(runs) == 1
    if device.type == "cuda" and not one:
        free = torch.cuda.mem_get_info(device)[0]
        fit = runs_that_fit(cfg.batch_size, cfg.iters_per_replay, free, device=device)
        if len(runs) > fit:
            need = len(runs) * bytes_per_run(cfg.batch_size, cfg.iters_per_replay, device)
            raise FastganError(f"{len(runs)} runs at batch {cfg.batch_size} need about {need / 2**30:.1f} GiB of GPU "
                               f"memory and {free / 2**30:.1f} GiB is free: at most {fit} runs fit; sweep fewer runs "
                               "at a time, or lower --iters-per-replay (each run holds that many iterations of noise)")
    trainer = GraphTrainer(runs[0].params if one else [r.params for r in runs],
                           runs[0].lr if one else [r.lr for r in runs],
                           runs[0].batcher if one else [r.batcher for r in runs], cfg.iters_per_replay,
                           capture=None if backend == "graph" else False,
                           betas=(runs[0].beta1 if one else [r.beta1 for r in runs], ADAM_BETAS[1]),
                           precision=cfg.precision)
    trainer.backend = backend
    try:
        trainer.warm_up()  # compile, capture and check the graph now, while nothing else uses the GPU
    except Exception as e:  # a compile, capture or replay-check failure: say it in one line
        what = f"{type(e).__name__}: {_first_line(e)}"
        if cfg.backend != "auto":
            raise FastganError(f"--backend graph failed at start-up ({what}); try --backend eager") from None
        fp32 = " in IEEE fp32" if cfg.precision != "ieee" else ""
        log(f"notice: the CUDA-graph backend failed at start-up ({what}); training with the eager backend{fp32} instead")
        return eager()
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
    """Measures snapshots of every run in the writer thread (fastgan.evaluate, one classifier
    pass for all runs), hands each result to its run's metrics log, and keeps each run's
    checkpoints/best.pt at the lowest Fréchet distance so far."""

    def __init__(self, evaluator, sides):
        self.evaluator, self.sides = evaluator, sides
        self.best = [side.losslog.best_fd for side in sides]

    def __call__(self, states):
        results = self.evaluator.many([state["params"] for state in states])
        for r, (side, state, result) in enumerate(zip(self.sides, states, results)):
            result = {"iter": state["iter"], **result}
            if result["fd"] < self.best[r]:
                _save_state(state, side.ckpt_dir / "best.pt")
                self.best[r] = result["fd"]
            side.losslog.extra.put(result)


def _write_grid(samples, path):
    try:
        save_grid(samples.cpu().numpy(), path)
    except OSError as e:
        raise FastganError(os_error("write", path, e)) from None


class _Background:
    """One writer thread for PNGs and checkpoints; its errors surface on the training thread.
    At most `max_pending` jobs wait (each may hold a device snapshot): past that, submitting waits
    for the oldest, so a writer slower than training slows training instead of filling memory."""

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
    is_sweep = cfg.seeds or cfg.sweep or (cfg.resume and (Path(cfg.resume) / sweep.SWEEP_FILE).is_file())
    if distributed.world()[1] > 1:
        if not is_sweep:
            raise FastganError(f"torchrun started {distributed.world()[1]} processes for a single run, which one "
                               "process trains; run it without torchrun, or give --seeds/--sweep to share runs out")
        return _train_sweep_distributed(cfg, log, show_progress)
    if is_sweep:
        return _train_sweep(cfg, log, show_progress)
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
        _train_runs(cfg, [(out, cfg, state)], log, show_progress)
        return out
    finally:
        folder.release()


def _sweep_runs(cfg):
    """(the runs [(name, settings)], the spec text, resuming?) of a new or resumed sweep; sets
    cfg.out, and the shared settings a resumed sweep keeps."""
    if cfg.resume:
        top = Path(cfg.resume)
        spec = sweep.read_spec(top)
        for key in ("iters", "batch_size", "dataset"):  # the sweep's own; a new --iters is a new target
            if not (key == "iters" and cfg.iters is not None):
                setattr(cfg, key, spec["shared"][key])
        if cfg.out is not None and Path(cfg.out).resolve() != top.resolve():
            raise FastganError("--resume of a sweep continues it in its own folder; leave out --out")
        cfg.out = str(top)
        return [(r["name"], {k: r[k] for k in ("lr", "beta1", "seed")}) for r in spec["runs"]], spec["spec"]
    if cfg.seeds and cfg.sweep:
        raise FastganError("--seeds and --sweep are two ways to give the runs; use one (--sweep can hold seed=...)")
    runs = sweep.expand(cfg, sweep.parse_seeds(cfg.seeds) if cfg.seeds else sweep.parse_sweep(cfg.sweep))
    if cfg.iters is None:
        cfg.iters = DEFAULT_ITERS
    return runs, f"seed={cfg.seeds}" if cfg.seeds else cfg.sweep


def _start_sweep_folder(top, spec, runs, cfg, resuming):
    """Claim the sweep's top folder; a new sweep needs it empty and gets its sweep.json."""
    folder = runfolder.claim(top, resuming=resuming)
    if not resuming:
        if any(p.name != runfolder.LOCK for p in top.iterdir()):
            folder.release()
            raise FastganError(f"--out {top} is not empty; a sweep starts in a new folder (or --resume {top})")
        sweep.write_spec(top, spec, runs, cfg)
    return folder


def _train_members(cfg, top, runs, resuming, log, show_progress):
    """Claim the given runs' folders, train them together; returns their summary rows and best grids."""
    folders = []
    try:
        states = _sweep_states(top, runs, log) if resuming else [None] * len(runs)
        members = []
        for (name, settings), state in zip(runs, states):
            folders.append(runfolder.claim(top / name, resuming=resuming))
            members.append((top / name, dataclasses.replace(cfg, **settings, out=str(top / name), resume=None,
                                                            seeds=None, sweep=None), state))
        _train_runs(cfg, members, log, show_progress)
        rows = [sweep.run_summary(name, settings, top / name) for name, settings in runs]
        return rows, {name: _best_grid(top / name) for name, _ in runs}
    finally:
        for f in folders:
            f.release()


def _write_sweep_summary(top, rows, grids, log):
    for row in sweep.write_summary(top, rows, grids)[:3]:
        best = f"best FD {row['best_fd']:.1f} at {row['best_iter']:,}" if row["best_fd"] is not None else "not measured"
        log(f"#{row['rank']} {row['run']}: {best}")
    log(f"summary: {top / 'summary.md'}")


def _train_sweep(cfg, log, show_progress):
    """Several runs in one trainer: OUT/<name>/ each, sweep.json and the summary in OUT."""
    runs, spec = _sweep_runs(cfg)
    resuming = bool(cfg.resume)
    cfg.validate()
    top = Path(cfg.out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    folder = _start_sweep_folder(top, spec, runs, cfg, resuming)
    try:
        log(f"sweep of {len(runs)} runs in {top}: {', '.join(n for n, _ in runs)}")
        rows, grids = _train_members(cfg, top, runs, resuming, log, show_progress)
        _write_sweep_summary(top, rows, grids, log)
        return top
    finally:
        folder.release()


def _train_sweep_distributed(cfg, log, show_progress):
    """This process's share of a sweep under torchrun; rank 0 also owns the top folder and the
    summary, gathered from every rank. A group restarted by torchrun resumes from checkpoints."""
    runs, spec = _sweep_runs(cfg)
    cfg.validate()
    group = distributed.Group(pick_device(cfg.device, lambda m: None))
    lead = group.rank == 0
    say = log if lead else (lambda m: None)  # one voice: rank 0 speaks, the others only fail loudly
    folder = None
    try:
        top = Path(group.broadcast(str(cfg.out or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))))
        resuming = bool(cfg.resume) or (distributed.restarted() and (top / sweep.SWEEP_FILE).is_file())
        if lead:
            folder = _start_sweep_folder(top, spec, runs, cfg, resuming)
            say(f"sweep of {len(runs)} runs in {top} over {group.size} processes"
                + (" (restarted by torchrun: continuing from checkpoints)" if resuming and not cfg.resume else ""))
        group.barrier()  # sweep.json and the top folder exist before any run folder is made
        rows, grids = _train_members(cfg, top, group.share(runs), resuming, say, show_progress and lead)
        gathered = group.gather((rows, grids))
        if lead:
            order = {name: i for i, (name, _) in enumerate(runs)}
            all_rows = sorted((r for rs, _ in gathered for r in rs), key=lambda r: order[r["run"]])
            all_grids = {k: v for _, g in gathered for k, v in g.items()}
            _write_sweep_summary(top, all_rows, all_grids, say)
        group.barrier()
        return top
    finally:
        if folder is not None:
            folder.release()
        group.close()


def _sweep_states(top, runs, log):
    """Each run's checkpoint at the newest iteration all the runs have (a kill can leave one run a
    checkpoint ahead of another); None for every run if they have none in common (a sweep
    stopped before its first checkpoints starts again from iteration 0)."""
    found = {name: {int(p.stem): p for p in checkpoint.list_checkpoints(top / name / "checkpoints")} for name, _ in runs}
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


class _RunSide:
    """One run's outputs: its folder, config, metrics log, grids, checkpoints, best.pt."""

    def __init__(self, out, cfg, state):
        self.out, self.cfg, self.state = Path(out), cfg, state
        self.ckpt_dir = self.out / "checkpoints"
        self.losslog = None


def _train_runs(cfg, members, log, show_progress):
    """Train the runs [(folder, its config, checkpoint state or None)] together to cfg.iters."""
    device = pick_device(cfg.device, log)
    backend = pick_backend(cfg.backend, device)
    data = load_dataset(cfg.dataset, cfg.data_dir, log)
    images = images_to_tensor(data["train_images"], device)

    sides = [_RunSide(*m) for m in members]
    batchers = [Batcher(images, cfg.batch_size, s.cfg.seed) for s in sides]
    inits = [RunInit(init_params(s.cfg.seed, device), s.cfg.lr, s.cfg.beta1, b) for s, b in zip(sides, batchers)]
    trainer = make_trainer(backend, inits, cfg, device, log)
    backend = trainer.backend
    R = len(sides)
    z_fixed = [fixed_noise(s.cfg.seed, device) for s in sides]
    starts = set()
    for r, (side, batcher) in enumerate(zip(sides, batchers)):
        if side.state is not None:
            trainer.load_state_dict(side.state, r)
            batcher.load_state_dict(side.state["sampler"])
        starts.add(int(side.state["iter"]) if side.state is not None else 0)
    if len(starts) != 1:
        raise FastganError(f"the runs start at different iterations ({sorted(starts)}); resume them one by one")
    start = starts.pop()
    if start >= cfg.iters:
        log(f"nothing to do: the checkpoint is at iteration {start} and --iters is {cfg.iters}")
        return

    for side in sides:
        for sub in ("samples", "checkpoints"):
            try:
                (side.out / sub).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise FastganError(os_error("create", side.out / sub, e)) from None
        atomic_write_text(side.out / "config.json",
                          json.dumps({**side.cfg.to_dict(), "backend": backend, "device": str(device)}, indent=2))
    where = sides[0].out if R == 1 else f"{R} run folders"
    log(f"training iterations {start + 1}..{cfg.iters} on {device} ({backend} backend), writing to {where}")

    def snapshot(r, it):
        return {"iter": it, **trainer.state_dict(r), "sampler": batchers[r].state_dict(), "config": sides[r].cfg.to_dict()}

    def sample(it):
        with torch.no_grad():
            for r, side in enumerate(sides):
                writer.submit(_write_grid, generator(trainer.run_params(r), z_fixed[r], trainer.ops),
                              side.out / "samples" / f"{it:07d}.png")

    def checkpoint_now(it):
        for r, side in enumerate(sides):
            side.losslog.drain(wait=True)  # every record up to `it` is written before the checkpoint...
            writer.submit(_write_checkpoint, snapshot(r, it), side.ckpt_dir, cfg.keep, side.losslog.fsync)  # ...and synced first

    evaluator = None
    if cfg.iters // cfg.eval_every > start // cfg.eval_every:  # at least one measurement ahead
        from .evaluate import Evaluator

        evaluator = Evaluator(data, cfg.dataset, cfg.data_dir, device, seed=cfg.seed, log=log)
    writer = _Background(max_pending=4 * R + 16)  # a few intervals' grids, checkpoints and measurements
    bar = tqdm(total=cfg.iters, initial=start, unit="it" if R == 1 else "GAN-it", unit_scale=R if R > 1 else False,
               disable=not show_progress, dynamic_ncols=True)
    quiet = tqdm(disable=True)  # the other runs' logs do not move the bar
    say = bar.write if show_progress else log
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
            for r, side in enumerate(sides):
                prefix = "" if R == 1 else f"[{side.out.name}] "
                side.losslog = LossLog(side.out, device, start, bar if r == 0 else quiet, cfg.sample_every,
                                       (lambda m, p=prefix: say(p + m)), log)
            measure = evaluator and _BestByDistance(evaluator, sides)
            while it < cfg.iters and not stop.requested:
                n = min(chunk, next_stop(it, cfg) - it)
                t0 = time.perf_counter()
                losses = trainer.advance(n).view(R, 4)
                if backend != "graph":
                    rate = n / max(time.perf_counter() - t0, 1e-9)
                    chunk = max(1, min(cfg.iters_per_replay, int(rate * CHECK_SECONDS)))
                it += n
                if it % cfg.log_every == 0 or it == cfg.iters:
                    for r, side in enumerate(sides):
                        side.losslog.push(it, losses[r])
                    writer.check()
                if it % cfg.sample_every == 0:
                    sample(it)
                if it % cfg.ckpt_every == 0:
                    checkpoint_now(it)
                if evaluator and it % cfg.eval_every == 0:
                    writer.submit(measure, [snapshot(r, it) for r in range(R)])
            if sides[0].losslog.last[0] != it:
                for r, side in enumerate(sides):
                    side.losslog.push(it, losses[r])
            if it % cfg.sample_every:
                sample(it)
            if it % cfg.ckpt_every:
                checkpoint_now(it)
            writer.close()
            for side in sides:
                side.losslog.drain(wait=True)
            failed = False
            if stop.requested:
                again = sides[0].out if R == 1 else sides[0].out.parent
                log(f"\nstopped at iteration {it}; continue with: python train.py --resume {again}")
    except KeyboardInterrupt:
        writer.close(raise_errors=False)  # a checkpoint being written is finished, not torn
        raise Interrupted(f"interrupted at once (second Ctrl-C) near iteration {it}, without a stop checkpoint; "
                          f"{_last_good(sides[0].ckpt_dir)}") from None
    except FastganError as e:
        writer.close(raise_errors=False)
        raise FastganError(f"{e}; {_last_good(sides[0].ckpt_dir)}") from None
    finally:
        if flush:
            torch.set_flush_denormal(False)
        bar.close()
        if failed:
            writer.close(raise_errors=False)
        for side in sides:
            if side.losslog is not None:
                side.losslog.close()
    for side in sides:
        try:
            save_losses(read_records(side.out / "metrics.jsonl"), side.out / "losses.png")
        except OSError as e:
            raise FastganError(os_error("write", side.out / "losses.png", e)) from None


def _last_good(ckpt_dir):
    good = checkpoint.list_checkpoints(ckpt_dir)
    return f"the last good checkpoint is {good[-1]}" if good else "no checkpoint had been written yet"
