"""A CPU sweep's runs spread over the cores: the CPU trainer (GraphTrainer on the launches' CPU
twins) with R runs and W = min(R, torch's threads) > 1 trains them in W processes at once, this
one and W - 1 forked workers, each computing its share of the runs (run r in process r mod W) on
one thread, over the trainer's buffers in shared memory. This process draws every run's batches
and noise (GraphTrainer.prepare) before each advance and reads the losses and parameters after.

Why processes: one run's iteration is ~60 small torch calls, and the products of one run do not
use 2 cores well (1.5x on 2 threads at batch 128). Two runs side by side, one core each, do: 1.43x
the GAN-iterations per second of the runs one after another on 2 threads (benchmarks/NOTES.md,
v4.6). Threads in one process do not: each torch call hands Python's lock over (+5%).

Bitwise: a run of a sweep equals the run trained alone (on any number of threads) only if the
matrix products give the same bits on 1 thread as on several. MKL splits the 784-deep sums of D1
over threads unless its strict reproducible mode is on (`MKL_CBWR=AUTO,STRICT`, which
`fastgan train` sets before torch loads, fastgan.cli.reproducible_products; no measured cost). `thread_invariant` checks the
iteration's products at the trainer's shapes; where they differ (the mode off, another BLAS) the
runs go one after another in this process, as before.

Workers ignore Ctrl-C and SIGTERM (the training loop in this process handles them and stops
between advances) and end when told, or when this process's end of their pipe closes (however it
ends). Shared buffers are anonymous shared mappings, not files: no /dev/shm space is used.
"""

import mmap
import multiprocessing
import signal
import weakref

import torch

from .errors import FastganError
from .kernels import twins
from .model import H_DIM, Z_DIM


def processes(R, B, X, H=H_DIM, Z=Z_DIM):
    """How many processes a CPU trainer of R runs at batch B on X pixels (hidden width H, Z noise
    inputs) spreads over (1: this one alone): one per thread torch may use, if its products are
    thread-invariant."""
    W = min(R, torch.get_num_threads())
    if W < 2 or "fork" not in multiprocessing.get_all_start_methods() or not thread_invariant(B, X, W, H, Z):
        return 1
    return W


def shared_zeros(shape, dtype=torch.float32, device=None):
    """A zero CPU tensor in an anonymous shared mapping: forked workers write the same memory."""
    n = torch.Size(shape).numel() * dtype.itemsize
    if n == 0:
        return torch.zeros(shape, dtype=dtype)
    return torch.frombuffer(mmap.mmap(-1, n), dtype=torch.uint8).view(dtype).view(shape)


def thread_invariant(B, X, threads, H=H_DIM, Z=Z_DIM):
    """Whether the iteration's matrix products (the twins' bmm calls at batch B, X pixels, hidden
    width H and Z noise inputs, each layout the twins use) give the same bits on one thread as on
    `threads`. (A conditional model's D reads X + C inputs and G Z + C: pass those.)"""
    gen = torch.Generator().manual_seed(0)
    shapes = [(2 * B, Z, H), (2 * B, H, X), (2 * B, X, H), (B, X, H), (B, H, X),
              (X, 2 * B, H), (H, B, X), (Z, B, H), (H, 2 * B, H)]
    before = torch.get_num_threads()
    try:
        for M, K, N in shapes:
            for ta in (False, True):
                for tb in (False, True):
                    a = torch.rand(1, K, M, generator=gen).transpose(1, 2) if ta else torch.rand(1, M, K, generator=gen)
                    b = torch.rand(1, N, K, generator=gen).transpose(1, 2) if tb else torch.rand(1, K, N, generator=gen)
                    torch.set_num_threads(1)
                    one = torch.bmm(a, b)
                    torch.set_num_threads(threads)
                    if not torch.equal(one, torch.bmm(a, b)):
                        return False
    finally:
        torch.set_num_threads(before)
    return True


_forking = None  # (trainer, the trainer's ends of the pipes made so far) while workers are forked


def _serve(runs, conn):
    """A worker: on each n received, iterations 0..n-1 of its runs; replies None or the error."""
    trainer, parent_ends = _forking
    for end in parent_ends:  # copies of the trainer's ends: closed, so its exit reads as EOF here
        end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)  # as the training loop sets it in its process
    try:
        while (n := conn.recv()) is not None:
            try:
                _train(trainer, runs, n)
                reply = None
            except Exception as e:
                reply = f"{type(e).__name__}: {e}"
            conn.send(reply)
    except (EOFError, OSError):  # the trainer's process ended
        return


def _train(trainer, runs, n):
    twins.forget_gathered()  # another process wrote the batch indices: their version counters here did not move
    trainer.iterations(n, [slice(r, r + 1) for r in runs])


def _stop(procs, conns):
    for conn in conns:
        try:
            conn.send(None)
        except OSError:  # a broken pipe: the worker is gone already
            pass
        conn.close()
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
            p.join()


def _lost(p):
    p.join(timeout=1)
    return FastganError(f"a CPU worker process of the sweep ended (exit code {p.exitcode}) mid-training; its runs' "
                        "state is lost since the last checkpoint")


class Workers:
    """The W - 1 worker processes of a trainer and this process's share of its runs."""

    def __init__(self, trainer, W):
        global _forking
        ctx = multiprocessing.get_context("fork")
        self.own = list(range(0, trainer.R, W))
        self.procs, self.conns = [], []
        twins.native.twins()  # the C++ twins built and loaded here, once: the workers inherit them
        try:
            for w in range(1, W):
                mine, theirs = ctx.Pipe()
                self.conns.append(mine)
                _forking = (trainer, self.conns)
                p = ctx.Process(target=_serve, args=(list(range(w, trainer.R, W)), theirs), daemon=True,
                                name=f"fastgan-cpu-worker-{w}")
                p.start()
                theirs.close()
                self.procs.append(p)
        except BaseException:
            _stop(self.procs, self.conns)
            raise
        finally:
            _forking = None
        self.trainer = weakref.proxy(trainer)
        self.close = weakref.finalize(trainer, _stop, self.procs, self.conns)

    def run(self, n):
        """Iterations 0..n-1 of the prepared chunk, every run, all processes at once."""
        for p, conn in zip(self.procs, self.conns):
            try:
                conn.send(n)
            except OSError:  # a broken pipe: the worker is gone
                raise _lost(p) from None
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _train(self.trainer, self.own, n)
        finally:
            torch.set_num_threads(threads)
        for p, conn in zip(self.procs, self.conns):
            try:
                error = conn.recv()
            except (EOFError, OSError):
                raise _lost(p) from None
            if error is not None:
                raise RuntimeError(f"a CPU worker process failed: {error}")
