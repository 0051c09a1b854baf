"""The training loop: one run, or a sweep's runs in one trainer, from a resolved config to its
last checkpoint.

The loop only enqueues device work. Once per log interval the four losses are copied to pinned
host memory without waiting (fastgan.metrics); grids, checkpoints and measurements are device
snapshots handed to one background writer (fastgan.outputs).
"""

import signal
import time

import torch
from tqdm import tqdm

from .cli import command
from .errors import FastganError
from .interrupt import Interrupted, StopOnSignals, Terminated
from .model import arch
from .outputs import BestByDistance, Writer
from .start import start_runs

CHECK_SECONDS = 0.25  # a trainer that takes any chunk gets chunks of about this long: Ctrl-C acts quickly


def next_stop(it, cfg):
    """The next iteration at which something is logged, drawn, saved, measured, or the run ends."""
    every = (cfg.log_every, cfg.sample_every, cfg.ckpt_every, cfg.eval_every)
    return min(cfg.iters, *(it // e * e + e for e in every))


def train_runs(cfg, members, log, show_progress):
    """Train the runs [(folder, its config, checkpoint state or None)] together to cfg.iters;
    returns whether a stop (Ctrl-C) ended them before it."""
    device, data, image, names, runs, trainer, start = start_runs(cfg, members, log)
    if start >= cfg.iters:
        log(f"nothing to do: the checkpoint is at iteration {start} and --iters is {cfg.iters}")
        trainer.close()
        return False
    for run in runs:
        run.create(trainer.backend, device, image, len(names))
    R = len(runs)
    log(f"training iterations {start + 1}..{cfg.iters} on {device} ({trainer.backend} backend), writing to "
        f"{runs[0].out if R == 1 else f'{R} run folders'}")

    def snapshot(r, it):
        return {"iter": it, "arch": arch(image, runs[r].cfg.hidden, names), **trainer.state_dict(r),
                "sampler": trainer.batchers[r].state_dict(), "config": runs[r].cfg.to_dict()}

    def sample(it):
        for r, run in enumerate(runs):
            run.sample(writer, trainer.sample_params(r), trainer.ops, it)

    def checkpoint(it):
        for r, run in enumerate(runs):
            run.checkpoint(writer, snapshot(r, it), cfg.keep)

    evaluator = None
    if cfg.iters // cfg.eval_every > start // cfg.eval_every:  # at least one measurement ahead
        from .evaluate import Evaluator

        evaluator = Evaluator(data, cfg.dataset, cfg.data_dir, device, seed=cfg.seed, log=log, classes=len(names))
    writer = Writer(max_pending=4 * R + 16)  # a few intervals' grids, checkpoints and measurements
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
    chunk = trainer.chunk or 1  # a captured graph's length; else sized to about CHECK_SECONDS below
    try:
        with StopOnSignals() as stop:
            for r, run in enumerate(runs):
                prefix = "" if R == 1 else f"[{run.out.name}] "
                run.open_log(device, start, bar if r == 0 else quiet, (lambda m, p=prefix: say(p + m)), log)
            measure = evaluator and BestByDistance(evaluator, runs)
            while it < cfg.iters and not stop.requested:
                n = min(chunk, next_stop(it, cfg) - it)
                t0 = time.perf_counter()
                losses = trainer.advance(n)
                if trainer.chunk is None:
                    rate = n / max(time.perf_counter() - t0, 1e-9)
                    chunk = max(1, min(cfg.iters_per_replay, int(rate * CHECK_SECONDS)))
                it += n
                if it % cfg.log_every == 0 or it == cfg.iters:
                    for r, run in enumerate(runs):
                        run.losslog.push(it, losses[r])
                    writer.check()
                if it % cfg.sample_every == 0:
                    sample(it)
                if it % cfg.ckpt_every == 0:
                    checkpoint(it)
                if evaluator and it % cfg.eval_every == 0:
                    writer.submit(measure, [snapshot(r, it) for r in range(R)])
            if runs[0].losslog.last[0] != it:
                for r, run in enumerate(runs):
                    run.losslog.push(it, losses[r])
            if it % cfg.sample_every:
                sample(it)
            if it % cfg.ckpt_every:
                checkpoint(it)
            writer.close()
            for run in runs:
                run.losslog.drain(wait=True)
            failed = False
            if stop.requested:
                again = runs[0].out if R == 1 else runs[0].out.parent
                stopped = f"stopped at iteration {it}; continue with: {command()} --resume {again}"
                if stop.signal != signal.SIGTERM:
                    log("\n" + stopped)
    except KeyboardInterrupt:
        writer.close(raise_errors=False)  # a checkpoint being written is finished, not torn
        raise Interrupted(f"interrupted at once (a second Ctrl-C or SIGTERM) near iteration {it}, without a stop "
                          f"checkpoint; {runs[0].last_good()}") from None
    except FastganError as e:
        writer.close(raise_errors=False)
        raise FastganError(f"{e}; {runs[0].last_good()}") from None
    finally:
        trainer.close()  # a CPU sweep's worker processes
        if flush:
            torch.set_flush_denormal(False)
        bar.close()
        if failed:
            writer.close(raise_errors=False)
        for run in runs:
            run.close()
    for run in runs:
        run.plot_losses()
    if stop.signal == signal.SIGTERM:
        raise Terminated(f"SIGTERM: {stopped}")
    return stop.requested
