"""fastgan.metrics: the metrics log's records, and the TensorBoard events a run writes, read
back through TensorBoard's own reader."""

import functools
import json

import pytest
from helpers import fake_arrays

from fastgan import evaluate, run
from fastgan.atomic import save_npz
from fastgan.config import Config
from fastgan.metrics import read_records

TINY = dict(arch={"c1": 2, "c2": 4, "fc": 8}, epochs=1, min_accuracy=0.0, n_samples=64)  # a seconds-long classifier


def test_read_records_skips_blank_lines_and_keeps_order(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"iter": 5}\n\n{"iter": 10, "fd": 3.5}\n')
    assert read_records(path) == [{"iter": 5}, {"iter": 10, "fd": 3.5}]
    assert read_records(tmp_path / "missing.jsonl") == []


def test_torn_line_ending_in_a_newline_counts_as_torn(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"iter": 5}\n{"iter": 1\n')
    notes = []
    assert read_records(path, notes.append) == [{"iter": 5}] and len(notes) == 1


def test_tensorboard_events_hold_losses_and_measurements(tmp_path, small_mnist, monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install -e '.[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setattr(evaluate, "Evaluator", functools.partial(evaluate.Evaluator, **TINY))
    data_dir = tmp_path / "data"
    save_npz(data_dir / "mnist.npz", fake_arrays(300, 50))
    cfg = Config(iters=20, batch_size=8, log_every=5, sample_every=10, ckpt_every=10, eval_every=10,
                 device="cpu", backend="eager", out=str(tmp_path / "run"), data_dir=str(data_dir))
    out = run.train(cfg, log=lambda m: None, show_progress=False)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"d_loss", "d_real_loss", "d_fake_loss", "g_loss", "its_per_s", "fd", "fd_floor", "score", "class_kl"} <= tags
    for tag in ("d_loss", "g_loss", "fd", "class_kl"):
        want = [(r["iter"], r[tag]) for r in records if tag in r]
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert all(v == pytest.approx(w, rel=1e-6) for (_, v), (_, w) in zip(got, want))
