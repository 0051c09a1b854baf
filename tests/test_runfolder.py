"""The run folder, tried as a hostile user would: reused folders, two trainings at once, SIGKILL
at random moments, a full disk, a read-only folder, torn logs, Ctrl-C at every stage.

Most cases run `train.py` as a real process on the CPU (eager, batch 8) on synthetic MNIST-size
data, since locks, signals and kills are properties of processes.
"""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import process_env, write_mnist_sized

from fastgan import checkpoint, runfolder
from fastgan.errors import FastganError
from fastgan.metrics import read_records

ROOT = Path(__file__).resolve().parents[1]
# --eval-every past the end: no measurement, so no classifier to train
BASE = ["--device", "cpu", "--backend", "eager", "--batch-size", "8", "--sample-every", "1000", "--eval-every", "100000000"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """MNIST-sized synthetic data (the loader checks the real sizes; train.py runs as a process)."""
    return write_mnist_sized(tmp_path_factory.mktemp("data"))


def _popen(data_dir, *args):
    return subprocess.Popen([sys.executable, str(ROOT / "train.py"), *BASE, "--data-dir", str(data_dir), *args],
                            cwd=ROOT, env=process_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(data_dir, *args, timeout=120):
    proc = _popen(data_dir, *args)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err.strip()


def _error_line(err):
    """The one error line of a failed run (stderr also carries tqdm's progress bar): no
    traceback, exactly one `error:` line, and it is the last line."""
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


def _final_params(out):
    return checkpoint.load(checkpoint.resolve(out))["params"]


def _wait_for(pred, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


# --- one run per folder ------------------------------------------------------------------------


def test_reusing_a_folder_is_refused_and_nothing_changes(data_dir, tmp_path):
    out = tmp_path / "R"
    assert _run(data_dir, "--iters", "300", "--ckpt-every", "100", "--log-every", "50", "--out", str(out))[0] == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != runfolder.LOCK}
    code, _, err = _run(data_dir, "--iters", "200", "--ckpt-every", "100", "--out", str(out))
    assert code == 2
    assert _error_line(err) == (f"error: --out {out} already holds a run (checkpointed at iteration 300); continue it with "
                   f"`python train.py --resume {out}`, or pick another --out")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != runfolder.LOCK} == before


def test_second_training_into_a_folder_in_use_fails_at_once(data_dir, tmp_path):
    out = tmp_path / "R"
    first = _popen(data_dir, "--iters", "1000000", "--ckpt-every", "100", "--out", str(out))
    try:
        assert _wait_for(lambda: (out / runfolder.LOCK).is_file() and (out / runfolder.LOCK).read_text().strip())
        t0 = time.monotonic()
        code, _, err = _run(data_dir, "--iters", "100", "--out", str(out))
        assert code == 2 and time.monotonic() - t0 < 30
        assert _error_line(err) == (f"error: run folder {out} is in use by another training (process {first.pid}); "
                       "wait for it to end or pick another --out")
        assert _wait_for(lambda: checkpoint.list_checkpoints(out / "checkpoints"))
        code, _, err = _run(data_dir, "--resume", str(out), "--iters", "100")
        assert code == 2 and f"in use by another training (process {first.pid})" in err
    finally:
        first.kill()
        first.wait()


def test_lock_is_released_when_the_owner_dies(data_dir, tmp_path):
    out = tmp_path / "R"
    first = _popen(data_dir, "--iters", "1000000", "--ckpt-every", "50", "--out", str(out))
    assert _wait_for(lambda: checkpoint.list_checkpoints(out / "checkpoints"))
    first.send_signal(signal.SIGKILL)
    first.wait()
    code, _, err = _run(data_dir, "--resume", str(out), "--iters", str(int(checkpoint.resolve(out).stem) + 10))
    assert code == 0, err


# --- SIGKILL at random moments ------------------------------------------------------------------


def test_kill_loop_resumes_bitwise_and_keeps_metrics(data_dir, tmp_path):
    """SIGKILL at 5 random moments of a run with frequent checkpoints, each followed by a resume:
    every checkpoint loads, the metrics hold exactly one record per logged iteration up to the
    end, and the final parameters equal an unbroken run's bitwise."""
    iters, flags = 1500, ["--ckpt-every", "20", "--log-every", "10", "--keep", "1000"]
    assert _run(data_dir, "--iters", str(iters), *flags, "--out", str(tmp_path / "unbroken"))[0] == 0
    out = tmp_path / "killed"
    rng = random.Random(0)
    kills = 0
    proc = _popen(data_dir, "--iters", str(iters), *flags, "--out", str(out))
    while True:
        # a random moment once the run is going (after its first checkpoint), or its end
        _wait_for(lambda: checkpoint.list_checkpoints(out / "checkpoints") or proc.poll() is not None)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        for ck in checkpoint.list_checkpoints(out / "checkpoints"):
            checkpoint.load(ck)  # every checkpoint left behind is readable
        proc = _popen(data_dir, "--resume", str(out))  # the run's own target and schedule: no flags repeated
        if kills == 5:
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert kills >= 3, "the run finished before it could be killed often enough; lengthen it"
    a, b = _final_params(tmp_path / "unbroken"), _final_params(out)
    assert checkpoint.resolve(out).name == f"{iters:07d}.pt"
    assert all(torch.equal(a[k], b[k]) for k in a)
    logged = [m["iter"] for m in read_records(out / "metrics.jsonl") if "d_loss" in m]
    assert logged == list(range(10, iters + 1, 10))
    unbroken = {m["iter"]: m["d_loss"] for m in read_records(tmp_path / "unbroken" / "metrics.jsonl")}
    assert all(m["d_loss"] == unbroken[m["iter"]] for m in read_records(out / "metrics.jsonl"))
    assert not list(out.rglob("*.tmp"))  # a kill mid-write leaves one; the resume that owns the folder removes it


def test_checkpoint_implies_its_records_are_on_disk(data_dir, tmp_path):
    """After a SIGKILL, every iteration logged up to the newest checkpoint has its record."""
    out = tmp_path / "R"
    proc = _popen(data_dir, "--iters", "1000000", "--ckpt-every", "30", "--log-every", "10", "--out", str(out))
    assert _wait_for(lambda: len(checkpoint.list_checkpoints(out / "checkpoints")) >= 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = int(checkpoint.list_checkpoints(out / "checkpoints")[-1].stem)
    logged = {m["iter"] for m in read_records(out / "metrics.jsonl")}
    assert set(range(10, last + 1, 10)) <= logged


# --- full and read-only disks -------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MB tmpfs where this machine allows mounting one (root on Linux), else skip."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if sys.platform != "linux" or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
                                                 capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root on Linux); the fault-injected test covers it")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(data_dir, small_disk):
    out = small_disk / "R"
    code, stdout, err = _run(data_dir, "--iters", "100000", "--ckpt-every", "50", "--log-every", "10",
                             "--keep", "1000", "--out", str(out))
    assert code == 2
    line = _error_line(err)
    assert "No space left on device" in line and "Traceback" not in stdout
    assert not list(out.rglob("*.tmp"))
    good = checkpoint.list_checkpoints(out / "checkpoints")
    assert good and line.endswith(f"the last good checkpoint is {good[-1]}")
    checkpoint.load(good[-1])
    logged = {m["iter"] for m in read_records(out / "metrics.jsonl")}
    assert set(range(10, int(good[-1].stem) + 1, 10)) <= logged


def test_failed_checkpoint_write_leaves_no_temp_file(tmp_path, monkeypatch):
    """Fault-injected: torch.save fails half-way as on a full disk (works on any machine)."""
    def failing_save(obj, f):
        f.write(b"x" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file")

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    path = tmp_path / "checkpoints" / "0000010.pt"
    with pytest.raises(FastganError, match=r"^cannot write checkpoint .*0000010\.pt: write failed \(\d+ MB free there\)$"):
        checkpoint.atomic_torch_save(path, {"a": 1})
    assert list(path.parent.iterdir()) == []


def test_read_only_out_is_one_line(data_dir, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() == 0:
        # root ignores permission bits: use a read-only bind mount where possible
        if subprocess.run(["mount", "--bind", "-o", "ro", str(out), str(out)], capture_output=True).returncode != 0:
            pytest.skip("running as root without a way to make a read-only folder")
        cleanup = ["umount", str(out)]
    else:
        out.chmod(0o555)
        cleanup = ["chmod", "755", str(out)]
    try:
        code, stdout, err = _run(data_dir, "--iters", "10", "--out", str(out / "run"))
    finally:
        subprocess.run(cleanup, capture_output=True)
    line = _error_line(err)
    assert code == 2 and "Traceback" not in stdout
    assert line.startswith(f"error: cannot create the run folder {out / 'run'}: ") and "pick an --out you can write to" in line


# --- resume continues the run ---------------------------------------------------------------------


def test_stop_hint_continues_to_the_stored_target(data_dir, tmp_path):
    out = tmp_path / "R"
    proc = _popen(data_dir, "--iters", "400", "--ckpt-every", "1000", "--log-every", "10", "--out", str(out))
    assert _wait_for(lambda: (out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").stat().st_size > 0)
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    hint = f"continue with: python train.py --resume {out}"
    assert hint in stdout
    stopped = int(checkpoint.resolve(out).stem)
    assert 0 < stopped < 400
    code, stdout, err = _run(data_dir, "--resume", str(out))
    assert code == 0, err
    assert f"training iterations {stopped + 1}..400" in stdout
    assert checkpoint.resolve(out).name == "0000400.pt"
    assert json.loads((out / "config.json").read_text())["iters"] == 400


def test_ctrl_c_during_start_up_is_one_line(data_dir, tmp_path):
    proc = _popen(data_dir, "--iters", "100", "--out", str(tmp_path / "R"))
    assert _wait_for(lambda: (tmp_path / "R" / runfolder.LOCK).is_file())  # past imports, loading data
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("start-up ended before the Ctrl-C arrived")
    assert proc.returncode == 130 and "Traceback" not in stdout
    assert _error_line(err).startswith("error: interrupted (Ctrl-C) while starting up")


# --- in-process: metrics records, checkpoints, smaller cases ---------------------------------------


def test_torn_last_line_is_repaired_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iter": 10, "d_loss": 1.0}\n{"iter": 20, "d_lo')
    notes = []
    assert read_records(path, notes.append) == [{"iter": 10, "d_loss": 1.0}]
    assert notes == [f"notice: {path} ended in a torn line (a crash while writing it); dropped it"]
    path.write_text('{"iter": 10}\nnot json\n{"iter": 30}\n')
    with pytest.raises(FastganError, match="line 2 is not a JSON record"):
        read_records(path)


def _checkpoint(tmp_path, data_dir):
    out = tmp_path / "R"
    assert _run(data_dir, "--iters", "20", "--ckpt-every", "10", "--out", str(out))[0] == 0
    return checkpoint.resolve(out)


def test_incomplete_or_non_finite_checkpoints_are_refused(data_dir, tmp_path):
    ck = _checkpoint(tmp_path, data_dir)
    state = torch.load(ck, weights_only=True)
    no_adam = tmp_path / "no_adam.pt"
    torch.save({k: v for k, v in state.items() if k != "adam"}, no_adam)
    code, _, err = _run(data_dir, "--resume", str(no_adam), "--out", str(tmp_path / "x"))
    assert code == 2 and _error_line(err) == (f"error: checkpoint {no_adam} lacks G's Adam state ('adam' entry); it cannot continue "
                                 "a run: resume from another checkpoint")
    state["params"]["D_W2"][0, 0] = float("nan")
    nan = tmp_path / "nan.pt"
    torch.save(state, nan)
    code, _, err = _run(data_dir, "--resume", str(nan), "--out", str(tmp_path / "y"))
    assert code == 2 and _error_line(err) == (f"error: checkpoint {nan}: parameter D_W2 has NaN or infinite values; "
                                 "use an earlier checkpoint of the run")


def test_loose_checkpoint_resumes_into_a_new_folder_beside_it(data_dir, tmp_path):
    ck = _checkpoint(tmp_path, data_dir)
    loose = tmp_path / "keep" / "good.pt"
    loose.parent.mkdir()
    loose.write_bytes(ck.read_bytes())
    code, stdout, err = _run(data_dir, "--resume", str(loose), "--iters", "30")
    assert code == 0, err
    assert f"resuming into a new run folder, {tmp_path / 'keep' / 'good-resumed'}" in stdout
    assert sorted(p.name for p in loose.parent.iterdir()) == ["good-resumed", "good.pt"]
    assert checkpoint.resolve(tmp_path / "keep" / "good-resumed").name == "0000030.pt"


@pytest.mark.parametrize("seed", [str(2**63), str(2**70), "-1"])
def test_seed_out_of_range(data_dir, tmp_path, seed):
    code, _, err = _run(data_dir, "--seed", seed, "--out", str(tmp_path / "s"))
    assert code == 2 and _error_line(err) == f"error: --seed must be an integer in 0..{2**63 - 1} (2**63 - 1), got {int(seed)}"
    assert not (tmp_path / "s").exists()


def test_resume_into_another_run_folder_is_refused(data_dir, tmp_path):
    ck = _checkpoint(tmp_path, data_dir)
    other = tmp_path / "other"
    assert _run(data_dir, "--iters", "10", "--out", str(other))[0] == 0
    code, _, err = _run(data_dir, "--resume", str(ck), "--out", str(other), "--iters", "40")
    assert code == 2 and "already holds a run" in err


def test_os_error_messages():
    from fastgan.errors import os_error

    full = os_error("write", "/x/m.jsonl", OSError(errno.ENOSPC, "No space left on device"))
    assert full == "cannot write /x/m.jsonl: No space left on device (free some space, or pick another --out)"
    ro = os_error("create the run folder", "/ro/r", OSError(errno.EROFS, "Read-only file system"))
    assert ro == "cannot create the run folder /ro/r: Read-only file system (pick an --out you can write to)"
