"""Sweeps (fastgan.sweep and the run loop's many-runs path) on the CPU, small synthetic data.

A sweep's run must equal the same run trained alone: bitwise, for the eager reference (a loop
over runs) and for the Triton trainer (one launch per kernel for all runs; the interpreter here).
"""

import json

import pytest
import torch
from conftest import DEVICES

from fastgan import checkpoint, run, sweep, train_cli
from fastgan.config import Config
from fastgan.errors import FastganError


def _cfg(data_dir, out, **kw):
    base = dict(iters=10, batch_size=8, sample_every=5, ckpt_every=5, keep=10, log_every=5, eval_every=1000,
                device="cpu", backend="eager", out=str(out) if out else None, data_dir=str(data_dir))
    base.update(kw)
    return Config(**base)


def _train(cfg):
    return run.train(cfg, log=lambda m: None, show_progress=False)


def _params(folder, it):
    return checkpoint.load(folder / "checkpoints" / checkpoint.ckpt_name(it))["params"]


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# --- the spec ---------------------------------------------------------------------------------


def test_seeds_and_sweep_specs():
    assert [r["seed"] for r in sweep.parse_seeds("0-2,5")] == [0, 1, 2, 5]
    runs = sweep.expand(Config(), sweep.parse_sweep("lr=1e-3,2e-4 beta1=0.9,0.5 seed=0-1"))
    assert len(runs) == 8
    default = {k: getattr(Config(), k) for k in sweep.KEYS}
    assert runs[3] == ("lr1e-3_beta1-0.5_seed1", {**default, "lr": 1e-3, "beta1": 0.5, "seed": 1})
    assert sweep.expand(Config(lr=2e-4), sweep.parse_seeds("3"))[0] == ("seed3", {**default, "lr": 2e-4, "seed": 3})
    runs = sweep.expand(Config(r1=1.0), sweep.parse_sweep("g_ema=0,0.999 lr_decay=none,cosine decay_start=100 "
                                                          "decay_floor=0.1 lr_g=4e-4 seed=2"))
    assert len(runs) == 4
    assert runs[3] == ("lr_g-4e-4_g_ema-0.999_lr_decay-cosine_decay_start-100_decay_floor-0.1_seed2",
                       {**default, "lr_g": 4e-4, "r1": 1.0, "g_ema": 0.999, "lr_decay": "cosine", "decay_start": 100,
                        "decay_floor": 0.1, "seed": 2})


@pytest.mark.parametrize("spec, message", [
    ("lr=", "give comma-separated values"),
    ("lr=1e-3,,2e-4", "give comma-separated values"),
    ("seed=3-1", "the range 3-1 is empty"),
    ("seed=a-b", "'a-b' is not a seed or a range"),
    ("momentum=0.9", "unknown key 'momentum'"),
    ("hidden=0", "hidden: 0 is out of range; a width of hidden units is >= 1"),
    ("hidden=5000", "hidden: 5000 is out of range; a width is at most 4096"),
    ("hidden=1.5", "'1.5' is not a width of hidden units"),
    ("conditional=maybe", "conditional: 'maybe' is not true or false"),
    ("lr=-1", "lr: -1 is out of range"),
    ("beta1=1.0", "beta1: 1.0 is out of range"),
    ("lr=x", "'x' is not a number"),
    ("r1=-1", "r1: -1 is out of range; gamma must be finite and >= 0"),
    ("g_ema=1", "g_ema: 1 is out of range; an EMA's beta must be in"),
    ("lr_d=0", "lr_d: 0 is out of range; a learning rate must be in"),
    ("lr_decay=step", "lr_decay: 'step' is not one of none, linear, cosine"),
    ("decay_start=1e3", "'1e3' is not an iteration"),
    ("decay_start=-5", "decay_start: -5 is out of range"),
    ("decay_floor=2", "decay_floor: 2 is out of range; a decay's floor is a fraction in"),
    ("lr=1e-3,0.001", "two runs with the same settings"),
    ("seed=1 seed=2", "seed is given twice"),
    ("lr", "is not KEY=VALUES"),
    ("", "--sweep is empty"),
])
def test_bad_specs_are_one_line(spec, message):
    with pytest.raises(FastganError, match=message):
        sweep.expand(Config(), sweep.parse_sweep(spec))


def test_cli_bad_sweep_writes_nothing(capsys, data_dir, tmp_path):
    code = train_cli.main(["--sweep", "lr=1e-3 beta1=2", "--out", str(tmp_path / "S"), "--data-dir", str(data_dir),
                           "--device", "cpu"])
    assert code == 2 and capsys.readouterr().err.strip().startswith("error: --sweep beta1: 2 is out of range")
    assert not (tmp_path / "S").exists()
    code = train_cli.main(["--seeds", "0-1", "--sweep", "lr=1e-3", "--out", str(tmp_path / "S")])
    assert code == 2 and "use one" in capsys.readouterr().err


# --- each run equals the run alone ---------------------------------------------------------------


@pytest.mark.parametrize("backend, iters", [("eager", 10), ("fused", 2)])
def test_sweep_runs_equal_runs_alone(data_dir, tmp_path, backend, iters):
    kw = dict(iters=iters, backend=backend, device="cpu" if backend == "eager" else DEVICES[0], ckpt_every=iters,
              sample_every=iters, log_every=1)
    top = _train(_cfg(data_dir, tmp_path / "S", sweep="lr=1e-3,2e-4 beta1=0.5 seed=0-1", **kw))
    names = [r["name"] for r in json.loads((top / sweep.SWEEP_FILE).read_text())["runs"]]
    assert names == ["lr1e-3_beta1-0.5_seed0", "lr1e-3_beta1-0.5_seed1", "lr2e-4_beta1-0.5_seed0",
                     "lr2e-4_beta1-0.5_seed1"][: len(names)] and len(names) == 4
    for name, (lr, seed) in zip(names, [(1e-3, 0), (1e-3, 1), (2e-4, 0), (2e-4, 1)]):
        alone = _train(_cfg(data_dir, tmp_path / f"alone-{name}", lr=lr, beta1=0.5, seed=seed, **kw))
        assert _equal(_params(top / name, iters), _params(alone, iters)), name
        a = [json.loads(x) for x in (top / name / "metrics.jsonl").read_text().splitlines()]
        b = [json.loads(x) for x in (alone / "metrics.jsonl").read_text().splitlines()]
        assert [(m["iter"], m["d_loss"], m["g_loss"]) for m in a] == [(m["iter"], m["d_loss"], m["g_loss"]) for m in b]
    for f in ("summary.csv", "summary.md", "summary.png"):
        assert (top / f).stat().st_size > 100


@pytest.mark.parametrize("backend, iters", [("eager", 10), ("fused", 2)])
def test_sweep_runs_with_options_equal_runs_alone(data_dir, tmp_path, backend, iters):
    """Runs that differ in R1 and G's EMA (a shared cosine decay and two learning rates), trained
    as one sweep, equal each run alone bitwise: parameters, EMA weights and losses."""
    kw = dict(iters=iters, backend=backend, device="cpu" if backend == "eager" else DEVICES[0], ckpt_every=iters,
              sample_every=iters, log_every=1, lr_g=5e-4,
              lr_decay="cosine", decay_start=1)
    top = _train(_cfg(data_dir, tmp_path / "S", sweep="r1=0,1 g_ema=0,0.9", **kw))
    for name, (r1, ema) in zip(("r1-0_g_ema-0", "r1-0_g_ema-0.9", "r1-1_g_ema-0", "r1-1_g_ema-0.9"),
                               [(0.0, 0.0), (0.0, 0.9), (1.0, 0.0), (1.0, 0.9)]):
        alone = _train(_cfg(data_dir, tmp_path / f"alone-{name}", r1=r1, g_ema=ema, **kw))
        a = checkpoint.load(top / name / "checkpoints" / checkpoint.ckpt_name(iters))
        b = checkpoint.load(alone / "checkpoints" / checkpoint.ckpt_name(iters))
        assert _equal(a["params"], b["params"]) and ("ema" in a) == ("ema" in b) == bool(ema), name
        assert _equal(a.get("ema", {}), b.get("ema", {}))
        assert (top / name / "metrics.jsonl").read_text().count("d_loss") == iters
        assert [json.loads(x)["g_loss"] for x in (top / name / "metrics.jsonl").read_text().splitlines()] == \
               [json.loads(x)["g_loss"] for x in (alone / "metrics.jsonl").read_text().splitlines()]
    assert (top / "summary.csv").read_text().startswith("rank,run,lr,beta1,r1,g_ema,seed,best_fd")


@pytest.mark.parametrize("backend, iters", [("eager", 6), ("fused", 2)])
def test_a_sweep_over_the_model_trains_in_groups_and_each_run_equals_the_run_alone(data_dir, tmp_path, backend, iters):
    """--sweep over the model's keys (hidden, conditional) with another key: the runs of one model
    train together, the models one after another; each run equals the run alone bitwise."""
    kw = dict(iters=iters, backend=backend, device="cpu" if backend == "eager" else DEVICES[0], ckpt_every=iters,
              sample_every=iters, log_every=1, r1=1.0)
    said = []
    top = run.train(_cfg(data_dir, tmp_path / "S", sweep="hidden=16,24 conditional=false,true seed=0-1", **kw),
                    log=said.append, show_progress=False)
    runs = json.loads((top / sweep.SWEEP_FILE).read_text())["runs"]
    assert [r["name"] for r in runs][:3] == ["hidden-16_conditional-false_seed0", "hidden-16_conditional-false_seed1",
                                             "hidden-16_conditional-true_seed0"] and len(runs) == 8
    assert sum(m.startswith("group ") for m in said) == 4
    for r in runs[::3]:
        alone = _train(_cfg(data_dir, tmp_path / f"alone-{r['name']}", hidden=r["hidden"], conditional=r["conditional"],
                            seed=r["seed"], **kw))
        a, b = (checkpoint.load(f / "checkpoints" / checkpoint.ckpt_name(iters)) for f in (top / r["name"], alone))
        assert a["arch"] == b["arch"] and a["arch"]["h_dim"] == r["hidden"] and ("classes" in a["arch"]) == r["conditional"]
        assert _equal(a["params"], b["params"]), r["name"]


def test_a_stop_in_one_model_group_leaves_the_next_for_the_resume(data_dir, tmp_path, monkeypatch):
    """Ctrl-C while the first group trains: it stops at a checkpoint and the second group does not
    start; the resume finishes the first group, then trains the second: the sweep in one go."""
    import os
    import signal

    from fastgan import start

    one = _train(_cfg(data_dir, tmp_path / "one", sweep="hidden=16,24", iters=10))
    real = start.make_trainer

    def make_trainer(*args):
        trainer = real(*args)
        advance = trainer.advance

        def interrupted(n):
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the group's first advance
            return advance(n)

        trainer.advance = interrupted
        return trainer

    monkeypatch.setattr(start, "make_trainer", make_trainer)
    two = _train(_cfg(data_dir, tmp_path / "two", sweep="hidden=16,24", iters=10))
    assert checkpoint.list_checkpoints(two / "hidden-16" / "checkpoints")
    assert not checkpoint.list_checkpoints(two / "hidden-24" / "checkpoints")
    monkeypatch.setattr(start, "make_trainer", real)
    _train(_cfg(data_dir, None, iters=10, resume=str(two)))
    for name in ("hidden-16", "hidden-24"):
        assert _equal(_params(one / name, 10), _params(two / name, 10)), name


def test_resume_of_a_sweep_equals_one_go_and_a_run_resumes_alone(data_dir, tmp_path):
    one = _train(_cfg(data_dir, tmp_path / "one", seeds="0-2", iters=20))
    _train(_cfg(data_dir, tmp_path / "two", seeds="0-2", iters=10))
    two = _train(_cfg(data_dir, None, iters=20, resume=str(tmp_path / "two")))
    assert two == tmp_path / "two"
    for name in ("seed0", "seed1", "seed2"):
        assert _equal(_params(one / name, 20), _params(two / name, 20))
    # a sweep's run folder is an ordinary run: it continues alone
    _train(_cfg(data_dir, None, iters=30, resume=str(tmp_path / "two" / "seed1")))
    assert checkpoint.resolve(tmp_path / "two" / "seed1").name == "0000030.pt"
    rows = (two / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("rank,run,lr,beta1,seed,best_fd") and len(rows) == 4


def test_sweep_needs_a_new_folder(data_dir, tmp_path):
    (tmp_path / "S").mkdir()
    (tmp_path / "S" / "notes.txt").write_text("mine")
    with pytest.raises(FastganError, match="is not empty; a sweep starts in a new folder"):
        _train(_cfg(data_dir, tmp_path / "S", seeds="0-1"))
    assert (tmp_path / "S" / "notes.txt").read_text() == "mine"


def test_a_sweep_stopped_before_its_first_checkpoint_starts_again(data_dir, tmp_path):
    """As a single run's folder: a sweep killed before any run's first checkpoint (here: its
    checkpoints removed) holds nothing to lose, and the same command starts it again (it used to
    be refused as "not empty"), saying so; one checkpoint anywhere and it is refused."""
    cfg = _cfg(data_dir, tmp_path / "S", seeds="0-1")
    _train(cfg)
    for ck in (tmp_path / "S").glob("seed*/checkpoints/*.pt"):
        ck.unlink()
    said = []
    run.train(cfg, log=said.append, show_progress=False)
    assert said[0] == f"notice: {tmp_path / 'S'} holds a sweep stopped before its first checkpoint (nothing to lose); starting it again"
    assert checkpoint.resolve(tmp_path / "S" / "seed1").name == "0000010.pt"
    with pytest.raises(FastganError, match="is not empty; a sweep starts in a new folder"):
        _train(cfg)


def test_resumed_sweep_keeps_its_schedule(data_dir, tmp_path, capsys):
    """`--resume SWEEP` with no other flag keeps the sweep's intervals and keep (sweep.json), and
    a given one changes them from then on, said once."""
    top = tmp_path / "s"
    assert train_cli.main(["--seeds", "0-1", "--iters", "6", "--batch-size", "8", "--ckpt-every", "3",
                           "--log-every", "3", "--keep", "9", "--eval-every", "1000", "--device", "cpu",
                           "--backend", "eager", "--data-dir", str(data_dir), "--out", str(top)]) == 0
    capsys.readouterr()
    assert train_cli.main(["--resume", str(top), "--iters", "12"]) == 0
    assert "notice: changed on resume: --iters 6 -> 12" in capsys.readouterr().out
    for name in ("seed0", "seed1"):
        assert [p.name for p in checkpoint.list_checkpoints(top / name / "checkpoints")] == [
            checkpoint.ckpt_name(i) for i in (3, 6, 9, 12)]
        assert json.loads((top / name / "config.json").read_text())["ckpt_every"] == 3
    assert train_cli.main(["--resume", str(top), "--iters", "16", "--ckpt-every", "4"]) == 0
    assert "notice: changed on resume: --iters 12 -> 16, --ckpt-every 3 -> 4" in capsys.readouterr().out
    assert train_cli.main(["--resume", str(top), "--iters", "21"]) == 0  # the changed interval is kept
    assert [p.name for p in checkpoint.list_checkpoints(top / "seed0" / "checkpoints")][-3:] == [
        checkpoint.ckpt_name(i) for i in (16, 20, 21)]
