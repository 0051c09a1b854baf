"""fastgan.cpu_workers: a CPU sweep's runs spread over worker processes (one thread each) over
shared buffers. The bitwise equality of each run with the run alone is tested in
test_graph_twins (and end to end below); here the machinery: shared memory, the thread-invariance
probe, chunks of any length, a worker that dies, signals, and workers that end with their trainer
or its process."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import process_env
from test_graph import _images

from fastgan import cpu_workers, model
from fastgan.batcher import Batcher
from fastgan.errors import FastganError
from fastgan.graph import GraphTrainer


@pytest.fixture
def two_threads():
    """torch on 2 threads (back after); skipped where the products differ between 1 and 2 threads
    even in MKL's strict mode (another BLAS): there a sweep never spreads, nothing to test."""
    if not cpu_workers.thread_invariant(16, 784, 2):
        pytest.skip("this torch's matrix products are not thread-invariant: CPU sweeps run in one process here")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _sweep(R, images=None, batch=16):
    images = _images("cpu") if images is None else images
    return GraphTrainer([model.init_params(s, "cpu") for s in range(R)], 1e-3,
                        [Batcher(images, batch, seed=s) for s in range(R)], 5, capture=False, twins=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie (exited, not yet reaped) is not alive
        return f.read().split(")")[-1].split()[0] != "Z"


def test_shared_zeros_are_shared_with_a_forked_process():
    t = cpu_workers.shared_zeros((3, 5), torch.float32)
    assert t.shape == (3, 5) and t.dtype == torch.float32 and not t.any() and t.is_contiguous()
    pid = os.fork()
    if pid == 0:
        t[1, 2] = 7.0
        os._exit(0)
    os.waitpid(pid, 0)
    assert t[1, 2] == 7.0 and t.sum() == 7.0
    assert cpu_workers.shared_zeros((0, 4)).shape == (0, 4)


def test_products_that_differ_between_thread_counts_keep_a_sweep_in_one_process(two_threads, monkeypatch):
    """Where the probe finds a product whose bits depend on the thread count (MKL without its
    strict mode splits the 784-deep sums over threads: measured on the CI machine), the runs go
    one after another in this process; one thread, or one run, never spreads."""
    assert cpu_workers.processes(4, 16, 784) == 2 and cpu_workers.processes(1, 16, 784) == 1
    monkeypatch.setattr(cpu_workers, "thread_invariant", lambda B, X, threads, H, Z: False)
    assert cpu_workers.processes(4, 16, 784) == 1 and _sweep(2).workers is None
    torch.set_num_threads(1)
    assert cpu_workers.processes(4, 16, 784) == 1


def test_chunks_of_any_length_keep_each_run_exact(two_threads):
    """Advances of 5, 1, 1, 3 iterations (a worker's kept gathered rows must not outlive its
    chunk: the indices another process wrote keep their version counters here) against the same
    runs one after another in this process."""
    images = _images("cpu")
    spread = _sweep(3, images)
    torch.set_num_threads(1)
    serial = _sweep(3, images)
    torch.set_num_threads(2)
    assert spread.workers is not None and serial.workers is None
    for n in (5, 1, 1, 3):
        assert torch.equal(spread.advance(n), serial.advance(n))
    for r in range(3):
        a, b = spread.run_params(r), serial.run_params(r)
        assert all(torch.equal(a[k], b[k]) for k in a)
    spread.close()


def test_a_dead_worker_is_one_line_and_ctrl_c_does_not_reach_workers(two_threads):
    """Ctrl-C reaches every process of a terminal's group: a worker ignores it (the training
    loop here stops between advances). A worker killed (the OOM killer) is one line."""
    sweep = _sweep(2)
    (proc,) = sweep.workers.procs
    sweep.advance(2)
    os.kill(proc.pid, signal.SIGINT)
    os.kill(proc.pid, signal.SIGTERM)
    sweep.advance(2)
    assert proc.is_alive()
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    with pytest.raises(FastganError, match=r"^a CPU worker process of the sweep ended \(exit code -9\) mid-training; "
                                           "its runs' state is lost since the last checkpoint$"):
        sweep.advance(2)
    sweep.close()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc to tell a live process from a zombie (Linux)")
def test_workers_end_with_their_trainer_and_with_its_process(two_threads):
    """close() ends them; so does the trainer's process ending however it ends (SIGKILL here):
    the workers read the end of their pipe and exit, and a run folder's lock goes with them."""
    sweep = _sweep(2)
    pid = sweep.workers.procs[0].pid
    sweep.close()
    assert not _alive(pid)
    code = ("import os, sys, time, torch; sys.path.insert(0, 'tests'); torch.set_num_threads(2)\n"
            "from test_cpu_workers import _sweep\n"
            "s = _sweep(2); s.advance(1); print(s.workers.procs[0].pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], env=process_env(), cwd=os.path.dirname(os.path.dirname(__file__)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 20
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker)


def test_fastgan_train_spreads_a_cpu_sweep_and_each_run_equals_the_run_alone(tmp_path, two_threads):
    """`fastgan train --seeds 0-1` on a CPU with 2 threads: says how the runs share the cores, and
    each run's checkpoint equals that of the same seed trained alone on 2 threads, bitwise (the
    CLI sets MKL's strict mode; the processes here do not inherit the tests' MKL_CBWR)."""
    from helpers import write_mnist_sized

    from fastgan import checkpoint

    data = write_mnist_sized(tmp_path / "data")
    root = os.path.dirname(os.path.dirname(__file__))
    env = {k: v for k, v in process_env().items() if k != "MKL_CBWR"}
    flags = ["--iters", "30", "--batch-size", "32", "--device", "cpu", "--backend", "fused", "--threads", "2",
             "--data-dir", str(data), "--eval-every", "1000000", "--sample-every", "1000"]

    def train(*args):
        out = subprocess.run([sys.executable, "train.py", *flags, *args], env=env, cwd=root, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout
    said = train("--seeds", "0-1", "--out", str(tmp_path / "sweep"))
    assert "the 2 runs share 2 processes, one thread each (one per core)" in said
    for seed in (0, 1):
        train("--seed", str(seed), "--out", str(tmp_path / f"alone{seed}"))
        got, want = (checkpoint.load(checkpoint.resolve(tmp_path / f)) for f in (f"sweep/seed{seed}", f"alone{seed}"))
        assert got["iter"] == want["iter"] == 30
        assert all(torch.equal(got["params"][k], want["params"][k]) for k in want["params"])
