"""fastgan.interrupt, as processes: SIGTERM (a scheduler's preemption) stops a run with a
checkpoint and exit code 143, fast enough for a grace period, and the run resumes; a Ctrl-C or
SIGTERM while torch is still loading or the run is starting is one line, never a traceback."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import process_env, write_mnist_sized

from fastgan import checkpoint

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--device", "cpu", "--backend", "eager", "--batch-size", "128", "--log-every", "10", "--sample-every",
         "100000", "--ckpt-every", "100000", "--eval-every", "100000000"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist_sized(tmp_path_factory.mktemp("data"))


def _start(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=process_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_checkpoints_exits_143_and_resumes(data_dir, tmp_path):
    out = tmp_path / "run"
    proc = _start("--iters", "1000000", *FLAGS, "--data-dir", str(data_dir), "--out", str(out))
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").is_file() or not (out / "metrics.jsonl").read_text().strip():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("SIGTERM: stopped at iteration ") and last.endswith(f"continue with: python train.py --resume {out}")
    stopped = int(last.split("iteration ")[1].split(";")[0])
    assert [p.name for p in checkpoint.list_checkpoints(out / "checkpoints")] == [checkpoint.ckpt_name(stopped)]
    assert "Traceback" not in err
    print(f"SIGTERM to exit: {took:.2f} s (eager, batch 128, 1 thread)")  # shown with pytest -s; not asserted
    proc = _start("--resume", str(out), "--iters", str(stopped + 20))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert checkpoint.list_checkpoints(out / "checkpoints")[-1].name == checkpoint.ckpt_name(stopped + 20)


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc to see torch loading (Linux only)")
def test_ctrl_c_while_torch_loads_is_one_line(data_dir, tmp_path):
    """The Ctrl-C lands while torch loads (interrupted mid-import, torch, numpy and matplotlib used
    to fail with other errors and a traceback): noted, then one line and exit code 130. Should the
    import end before the signal lands, the short run trains: no traceback either way."""
    proc = _start("--iters", "5", *FLAGS, "--data-dir", str(data_dir), "--out", str(tmp_path / "run"))
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and "libtorch" not in maps.read_text():
        time.sleep(0.01)  # until torch's libraries are mapped: train.py is importing torch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err
    assert proc.returncode in (0, 130), err[-2000:]
    if proc.returncode == 130:
        assert err.strip().splitlines()[-1].startswith("error: interrupted (Ctrl-C)")


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc to see torch loading (Linux only)")
def test_sigterm_while_torch_loads_is_one_line(data_dir, tmp_path):
    """As the Ctrl-C above, SIGTERM (a scheduler's stop) while torch loads: it used to end the
    process silently; now noted, then one line and exit code 143 (or the short run trains)."""
    proc = _start("--iters", "5", *FLAGS, "--data-dir", str(data_dir), "--out", str(tmp_path / "run"))
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and "libtorch" not in maps.read_text():
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err
    assert proc.returncode in (0, 143), err[-2000:]
    if proc.returncode == 143:
        assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM); nothing was trained"


def _sigterm_during(monkeypatch, module, name):
    """Replace module.name by a wrapper that sends this process SIGTERM before calling it."""
    import os

    real = getattr(module, name)

    def signalled(*a, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        return real(*a, **kw)
    monkeypatch.setattr(module, name, signalled)


def test_sigterm_during_start_up_exits_143_with_one_line(data_dir, tmp_path, monkeypatch, capsys):
    """SIGTERM after the imports and before the loop (here: while the run folder is claimed) stops
    at once like a Ctrl-C there: exit code 143 and one line, no run folder left; the same while
    the flags are read (the deferred window) says nothing was trained."""
    from fastgan import run, train_cli

    _sigterm_during(monkeypatch, run.runfolder, "claim")
    args = ["--iters", "5", *FLAGS, "--data-dir", str(data_dir), "--out", str(tmp_path / "run")]
    assert train_cli.main(args) == 143
    assert capsys.readouterr().err.strip() == "terminated (SIGTERM) while starting up or shutting down; stopped at once"
    assert not (tmp_path / "run").exists()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    monkeypatch.undo()
    _sigterm_during(monkeypatch, train_cli, "parse_args")
    assert train_cli.main(args) == 143
    assert capsys.readouterr().err.strip() == "error: terminated (SIGTERM); nothing was trained"
