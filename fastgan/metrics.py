"""metrics.jsonl: one JSON object per line, written so that nothing a checkpoint covers is lost.

Every record is flushed to the OS as it is written (a SIGKILL loses nothing already written),
and `fsync()` makes the file durable; the checkpoint writer calls it before each checkpoint's
rename, so a checkpoint at iteration N implies every record up to N is on disk. On resume the
records after the checkpoint's iteration are dropped (the resumed run writes them again) and a
torn last line (a crash mid-write) is repaired with a notice; the file is rewritten atomically.

`LossLog` copies the losses to pinned host memory asynchronously and writes their records when
the copy has arrived: the training loop never waits on the GPU between log intervals.
"""

import json
import math
import os
import queue
import time
from collections import deque
from pathlib import Path

import torch

from .atomic import write_text
from .errors import FastganError, os_error
from .plots import LOSS_KEYS


class NonFiniteLoss(FastganError):
    """A logged loss or a parameter about to be saved was NaN or infinite."""


def read_records(path, log=None):
    """The records of a metrics file. A torn last line is dropped (with a notice to `log`); any
    other unreadable line is a FastganError naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").split("\n")
    complete, last = lines[:-1], lines[-1]  # `last` is what follows the final newline
    records = []
    for i, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(complete) and not last:
                last = line  # a torn line that happened to end in a newline: treat it as torn
                break
            raise FastganError(f"{path} line {i} is not a JSON record; move the file away to start a new log") from None
    if last.strip():
        try:
            records.append(json.loads(last))
        except json.JSONDecodeError:
            if log:
                log(f"notice: {path} ended in a torn line (a crash while writing it); dropped it")
    return records


class LossLog:
    """Writes metrics.jsonl (and TensorBoard events, if installed) for a run from `start_iter`."""

    def __init__(self, out, device, start_iter, bar, print_every, say, log):
        self.device = device
        self.say = say
        self.pending = deque()
        self.bar = bar
        self.print_every = print_every
        self.path = Path(out) / "metrics.jsonl"
        records = read_records(self.path, log)
        kept = [m for m in records if m["iter"] <= start_iter]
        redone = sorted({m["iter"] for m in records if m["iter"] > start_iter})
        if redone:
            log(f"notice: metrics.jsonl had {len(redone)} records after iteration {start_iter} (up to {redone[-1]}); "
                f"iterations {start_iter + 1}..{redone[-1]} are redone and their records written again")
        if self.path.exists():  # rewritten whole: drops the redone records and a torn last line
            write_text(self.path, "".join(json.dumps(m) + "\n" for m in kept))
        try:
            self.file = open(self.path, "a")
        except OSError as e:
            raise FastganError(os_error("open", self.path, e)) from None
        self.last = (start_iter, time.perf_counter())
        self.extra = queue.SimpleQueue()  # records from other threads (sample metrics)
        self.best_fd = min((m["fd"] for m in kept if "fd" in m), default=math.inf)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(out) / "tensorboard"), purge_step=start_iter + 1)
        except ImportError:
            pass

    def push(self, it, losses):
        """Start copying iteration `it`'s losses (a 4-element device tensor) to the host."""
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
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as e:
            raise FastganError(os_error("write", self.path, e)) from None
        if self.tb is not None:
            for k, v in record.items():
                if k != "iter" and isinstance(v, float):
                    self.tb.add_scalar(k, v, record["iter"])

    def fsync(self):
        """Make every record written so far durable (called by the checkpoint writer thread)."""
        os.fsync(self.file.fileno())

    def drain(self, wait=False):
        """Write the records whose copies have arrived (all of them if `wait`)."""
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
            floor = "—" if record["fd_floor"] is None else f"{record['fd_floor']:.3f}"
            classes = f"; score {record['score']:.2f}; class KL {record['class_kl']:.3f}" if "score" in record else \
                " (label-free: principal components of the training images)"
            asked = f"; asked-for class {record['cond_acc']:.3f} (worst {min(record['cond_acc_classes']):.3f})" \
                if "cond_acc" in record else ""
            self.say(f"Iter: {record['iter']}; Fréchet distance {record['fd']:.3f} (floor {floor}){classes}{asked}")

    def close(self):
        try:
            self.file.close()
        except OSError:
            pass  # a failed final flush was already reported by the write that failed
        if self.tb is not None:
            self.tb.close()
