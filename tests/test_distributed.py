"""Sweeps under torchrun on the CPU (gloo): 2 processes give the same run folders and summary as
one; a worker killed with SIGKILL is restarted by torchrun and the sweep ends as an unbroken one;
a failing rank fails the command with its error shown; a single run is refused.

Small on purpose: the CI machine has 2 cores (one torch thread per process).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import process_env, write_mnist_sized

from fastgan import checkpoint, runfolder

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
FLAGS = ["--device", "cpu", "--batch-size", "8", "--log-every", "10", "--sample-every", "1000", "--ckpt-every", "20",
         "--eval-every", "100000000"]

pytestmark = pytest.mark.skipif(not os.path.exists(TORCHRUN), reason="torchrun is not installed beside this Python")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist_sized(tmp_path_factory.mktemp("data"))


def _torchrun(*args, procs=2, restarts=0, popen=False):
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node", str(procs), "--max-restarts", str(restarts),
           str(ROOT / "train.py"), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=process_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if popen:
        return proc
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _single(*args):
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=process_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _same_runs(a, b, names, it):
    for name in names:
        pa = checkpoint.load(a / name / "checkpoints" / checkpoint.ckpt_name(it))["params"]
        pb = checkpoint.load(b / name / "checkpoints" / checkpoint.ckpt_name(it))["params"]
        assert all(torch.equal(pa[k], pb[k]) for k in pa), name


NAMES = ["seed0", "seed1", "seed2", "seed3"]


def test_two_processes_equal_one(data_dir, tmp_path):
    t0 = time.monotonic()
    code, out, err = _torchrun("--seeds", "0-3", "--iters", "60", *FLAGS, "--data-dir", str(data_dir),
                               "--out", str(tmp_path / "two"))
    two_s = time.monotonic() - t0
    assert code == 0, err[-3000:]
    t0 = time.monotonic()
    _single("--seeds", "0-3", "--iters", "60", *FLAGS, "--data-dir", str(data_dir), "--out", str(tmp_path / "one"))
    one_s = time.monotonic() - t0
    _same_runs(tmp_path / "two", tmp_path / "one", NAMES, 60)
    assert (tmp_path / "two" / "summary.csv").read_text() == (tmp_path / "one" / "summary.csv").read_text()
    assert (tmp_path / "two" / "summary.png").is_file()
    print(f"2 processes {two_s:.1f} s, 1 process {one_s:.1f} s")  # shown with -s; for the notes


def test_sigkilled_worker_is_restarted_and_the_sweep_ends_as_unbroken(data_dir, tmp_path):
    iters = ["--iters", "600"]
    out = tmp_path / "killed"
    proc = _torchrun("--seeds", "0-3", *iters, *FLAGS, "--data-dir", str(data_dir), "--out", str(out),
                     restarts=1, popen=True)
    lock = out / "seed1" / runfolder.LOCK  # seed1 is rank 1's: its lock holds that worker's PID
    end = time.monotonic() + 120
    while time.monotonic() < end and not checkpoint.list_checkpoints(out / "seed1" / "checkpoints"):
        time.sleep(0.05)
    killed_at = len(checkpoint.list_checkpoints(out / "seed1" / "checkpoints")) * 20
    os.kill(int(lock.read_text()), signal.SIGKILL)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "restarted by torchrun: continuing from checkpoints" in stdout
    assert killed_at > 0
    _single("--seeds", "0-3", *iters, *FLAGS, "--data-dir", str(data_dir), "--out", str(tmp_path / "unbroken"))
    _same_runs(out, tmp_path / "unbroken", NAMES, 600)
    logged = [int(x.split('"iter": ')[1].split(",")[0]) for x in (out / "seed1" / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(10, 601, 10))


def test_a_failing_rank_fails_the_command_with_its_error(data_dir, tmp_path):
    out = tmp_path / "bad"
    assert _torchrun("--seeds", "0-3", "--iters", "20", *FLAGS, "--data-dir", str(data_dir), "--out", str(out))[0] == 0
    ck = out / "seed1" / "checkpoints" / "0000020.pt"  # rank 1's run: its checkpoint torn
    ck.write_bytes(ck.read_bytes()[:1000])
    t0 = time.monotonic()
    code, _, err = _torchrun("--resume", str(out), "--iters", "40", *FLAGS[:2], "--data-dir", str(data_dir))
    assert code != 0 and time.monotonic() - t0 < 200
    assert f"error: {ck} is unreadable as a checkpoint" in err


def test_single_run_under_torchrun_is_refused(data_dir, tmp_path):
    code, _, err = _torchrun("--iters", "20", *FLAGS, "--data-dir", str(data_dir), "--out", str(tmp_path / "s"))
    assert code != 0
    assert "error: torchrun started 2 processes for a single run" in err


def test_sigterm_to_torchrun_checkpoints_every_worker_and_resumes_exactly(data_dir, tmp_path):
    """A preempted job: torchrun forwards SIGTERM to its workers; each stops after its chunk with a
    checkpoint of its runs, and `--resume` (no other flag) ends the sweep as an unbroken one."""
    iters = ["--iters", "1200"]
    out = tmp_path / "term"
    proc = _torchrun("--seeds", "0-3", *iters, *FLAGS, "--data-dir", str(data_dir), "--out", str(out), popen=True)
    end = time.monotonic() + 120
    while time.monotonic() < end and not all(checkpoint.list_checkpoints(out / n / "checkpoints") for n in NAMES):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # torchrun itself ends with its SignalException's traceback; the workers' own output is one line each
    assert proc.returncode != 0 and str(ROOT / "fastgan") not in err and "train.py\", line" not in err, err[-3000:]
    assert err.count("SIGTERM: stopped at iteration") == 2, err[-3000:]
    for name in NAMES:
        for ck in checkpoint.list_checkpoints(out / name / "checkpoints"):
            checkpoint.load(ck)
    assert max(int(p.stem) for n in NAMES for p in checkpoint.list_checkpoints(out / n / "checkpoints")) < 1200
    code, _, err = _torchrun("--resume", str(out))
    assert code == 0, err[-3000:]
    _single("--seeds", "0-3", *iters, *FLAGS, "--data-dir", str(data_dir), "--out", str(tmp_path / "unbroken"))
    _same_runs(out, tmp_path / "unbroken", NAMES, 1200)
