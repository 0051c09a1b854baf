"""fastgan.evaluate: the metrics on hand-made inputs, the classifier cache, and the run hooks,
with a tiny classifier on synthetic data (the real one is trained on MNIST on first use)."""

import functools
import json
import math

import numpy as np
import pytest
import torch
from helpers import fake_arrays

from fastgan import checkpoint, classifier, distance, evaluate, run
from fastgan.atomic import save_npz
from fastgan.config import Config
from fastgan.errors import FastganError

TINY = dict(arch={"c1": 2, "c2": 4, "fc": 8}, epochs=1, min_accuracy=0.0)


@pytest.fixture
def arrays(small_mnist):
    return fake_arrays(300, 50)


def _quiet():
    logs = []
    return logs, logs.append


@pytest.mark.parametrize("bad", ["garbage", "foreign", "other-arch", "code"])
def test_untrustworthy_cache_is_rebuilt(tmp_path, arrays, bad):
    path = classifier.classifier_path(tmp_path, "mnist")
    if bad == "garbage":
        path.write_bytes(b"PK\x03\x04 not a torch file")
    elif bad == "foreign":
        torch.save({"weights": torch.ones(3)}, path)
    elif bad == "other-arch":
        evaluate.get_classifier(arrays, "mnist", tmp_path, "cpu", **{**TINY, "arch": {"c1": 3, "c2": 4, "fc": 8}}, log=lambda m: None)
    else:
        torch.save({"format": classifier.CLASSIFIER_FORMAT, "arch": TINY["arch"], "payload": Config()}, path)
    logs, log = _quiet()
    model, record = evaluate.get_classifier(arrays, "mnist", tmp_path, "cpu", log=log, **TINY)
    assert any("rebuilding the classifier cache" in m for m in logs)
    assert isinstance(model, classifier.Classifier) and record["arch"] == TINY["arch"]
    again, _ = classifier.load_classifier(path, TINY["arch"], "cpu")
    assert again is not None


def test_valid_cache_is_reused(tmp_path, arrays):
    model, _ = evaluate.get_classifier(arrays, "mnist", tmp_path, "cpu", log=lambda m: None, **TINY)
    logs, log = _quiet()
    again, record = evaluate.get_classifier(arrays, "mnist", tmp_path, "cpu", log=log, **TINY)
    assert logs == []
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert 0 <= record["test_accuracy"] <= 1 and record["fd_floor"] > 0


def test_too_weak_classifier_is_not_cached(tmp_path, arrays):
    with pytest.raises(FastganError, match="test accuracy"):
        evaluate.get_classifier(arrays, "mnist", tmp_path, "cpu", log=lambda m: None, **{**TINY, "min_accuracy": 1.01})
    assert not classifier.classifier_path(tmp_path, "mnist").exists()


def test_evaluator_measures_a_generator(tmp_path, arrays):
    from fastgan.model import init_params

    ev = evaluate.Evaluator(arrays, "mnist", tmp_path, "cpu", n_samples=64, log=lambda m: None, **TINY)
    result = ev(init_params(0, "cpu"))
    assert set(result) == {"fd", "fd_floor", "score", "class_kl", "classes"}
    assert sum(result["classes"]) == pytest.approx(1.0, abs=1e-3)
    assert result["fd"] > 0 and 1 <= result["score"] <= 10 and 0 <= result["class_kl"] <= math.log(10) + 1e-9


def test_repeated_sets_give_the_mean_and_spread_and_set_0_is_the_default_one(tmp_path, arrays):
    """Set 0 of --repeats is the default measurement, bitwise; the others are other noise, so
    their distances differ; the mean and the sample standard deviation are of the sets' values;
    a run's evaluator (its seed s) measures on set s, and is left on it after measuring sets."""
    from fastgan.model import init_params

    ev = evaluate.Evaluator(arrays, "mnist", tmp_path, "cpu", n_samples=64, log=lambda m: None, **TINY)
    params = init_params(0, "cpu")
    default = ev(params)
    got = ev.repeated(params, 3)
    assert got["sets"] == 3 and got["fd_sets"][0] == default["fd"] and len(set(got["fd_sets"])) == 3
    assert got["fd"] == pytest.approx(sum(got["fd_sets"]) / 3, rel=1e-12)
    assert got["fd_sd"] == pytest.approx(torch.tensor(got["fd_sets"], dtype=torch.float64).std().item(), rel=1e-9)
    assert got["score_sets"][0] == default["score"] and got["fd_floor"] == default["fd_floor"]
    assert sum(got["classes"]) == pytest.approx(1.0, abs=1e-3)
    assert ev(params) == default and ev.repeated(params, 1) == default
    own = evaluate.Evaluator(arrays, "mnist", tmp_path, "cpu", n_samples=64, seed=2, log=lambda m: None, **TINY)
    mine = own(params)
    assert mine["fd"] == got["fd_sets"][2] and own.repeated(params, 2)["fd_sets"][0] == default["fd"] and own(params) == mine


def test_label_free_distance_tells_data_from_noise(arrays):
    """PCAFeatures (your own images, or --label-free): the training images against their
    reference half sit near the floor (two halves of real images), uniform noise images far
    above; an Evaluator without a classifier reports the distance and floor only."""
    from fastgan.batcher import images_to_tensor
    from fastgan.model import init_params

    train = images_to_tensor(arrays["train_images"], "cpu")
    pca = evaluate.PCAFeatures(train, n_components=16)
    real = distance.frechet_distance(pca.features(train[:150]), pca.reference)
    noise = distance.frechet_distance(pca.features(torch.rand(150, train.shape[1])), pca.reference)
    assert pca.floor is not None and real < 3 * pca.floor + 1 and noise > 10 * real
    ev = evaluate.Evaluator({"train_images": arrays["train_images"]}, "mine", None, "cpu", n_samples=64)
    assert ev.label_free and set(ev(init_params(0, "cpu"))) == {"fd", "fd_floor"}


def test_run_measures_keeps_best_and_cli_reads_it(tmp_path, arrays, monkeypatch, capsys):
    monkeypatch.setattr(evaluate, "Evaluator", functools.partial(evaluate.Evaluator, n_samples=64, **TINY))
    data_dir = tmp_path / "data"
    save_npz(data_dir / "mnist.npz", arrays)
    cfg = Config(iters=30, batch_size=8, log_every=5, sample_every=10, ckpt_every=10, eval_every=10,
                 device="cpu", backend="eager", out=str(tmp_path / "run"), data_dir=str(data_dir))
    out = run.train(cfg, log=lambda m: None, show_progress=False)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in lines if "fd" in m]
    assert [m["iter"] for m in evals] == [10, 20, 30]
    best = checkpoint.load(out / "checkpoints" / "best.pt")
    assert best["iter"] == min(evals, key=lambda m: m["fd"])["iter"]
    assert (out / "losses.png").stat().st_size > 1000

    assert evaluate.main([str(out), "--json", "--samples", "64", "--data-dir", str(data_dir), "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["iter"] == best["iter"] and set(result) >= {"fd", "fd_floor", "score", "class_kl", "classes"}
    assert evaluate.main([str(out), "--repeats", "2", "--samples", "64", "--data-dir", str(data_dir), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "sample sets       2 of 64 samples each" in printed and "Fréchet distance  " in printed and " ± " in printed


@pytest.mark.parametrize("n", ["1", "1000000000000"])
def test_cli_refuses_a_sample_count_out_of_range(tmp_path, capsys, n):
    assert evaluate.main([str(tmp_path), "--samples", n]) == 2
    assert capsys.readouterr().err.strip() == f"error: --samples must be in 2..200,000, got {int(n):,}"


@pytest.mark.parametrize("n", ["0", "101"])
def test_cli_refuses_a_repeat_count_out_of_range(tmp_path, capsys, n):
    assert evaluate.main([str(tmp_path), "--repeats", n]) == 2
    assert capsys.readouterr().err.strip() == f"error: --repeats must be in 1..100, got {n}"


def test_cli_rejects_a_bad_checkpoint(tmp_path, capsys):
    f = tmp_path / "x.pt"
    f.write_bytes(b"nope")
    assert evaluate.main([str(f)]) == 2
    assert "unreadable" in capsys.readouterr().err


def test_many_generators_in_one_pass_equal_each_alone(tmp_path, arrays):
    from fastgan.model import init_params

    ev = evaluate.Evaluator(arrays, "mnist", tmp_path, "cpu", n_samples=64, log=lambda m: None, **TINY)
    runs = [init_params(s, "cpu") for s in range(3)]
    together = ev.many(runs)
    for params, got in zip(runs, together):
        want = ev(params)
        assert got["classes"] == want["classes"]
        assert got["fd"] == pytest.approx(want["fd"], rel=1e-9) and got["score"] == pytest.approx(want["score"], rel=1e-9)


def test_sweep_measures_every_run_and_keeps_each_best(tmp_path, arrays, monkeypatch):
    monkeypatch.setattr(evaluate, "Evaluator", functools.partial(evaluate.Evaluator, n_samples=64, **TINY))
    data_dir = tmp_path / "data"
    save_npz(data_dir / "mnist.npz", arrays)
    cfg = Config(iters=20, batch_size=8, log_every=5, sample_every=10, ckpt_every=10, eval_every=10, seeds="0-1",
                 device="cpu", backend="eager", out=str(tmp_path / "S"), data_dir=str(data_dir))
    top = run.train(cfg, log=lambda m: None, show_progress=False)
    for name in ("seed0", "seed1"):
        evals = [json.loads(x) for x in (top / name / "metrics.jsonl").read_text().splitlines() if '"fd"' in x]
        assert [m["iter"] for m in evals] == [10, 20]
        assert checkpoint.load(top / name / "checkpoints" / "best.pt")["iter"] == min(evals, key=lambda m: m["fd"])["iter"]
    summary = (top / "summary.md").read_text()
    assert "| 1 | seed" in summary and "—" not in summary.splitlines()[2]


SMALL = dict(epochs=3)  # the default classifier: TINY's 2 and 4 channels do not learn at 16 x 16


def test_your_labelled_images_get_their_own_classifier(tmp_path):
    """Labelled images of 16 x 16 RGB (a bright patch whose place is the label, on noise): a
    classifier for 3 channels, 16 pixels and 4 classes is trained on 90%, its held-out accuracy
    printed and cached (the second Evaluator reuses it, a third rebuilds a corrupt cache); the measurement has a 4-class histogram.
    Below 16 pixels, or without labels: the label-free distance."""
    from fastgan.model import init_params

    rng = np.random.default_rng(0)
    labels = np.arange(1000) % 4
    images = (rng.random((1000, 3, 16, 16)) * 60).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, :, 4 * k : 4 * k + 4, :] = 255
    arrays = {"train_images": images, "train_labels": labels}
    said = []
    ev = evaluate.Evaluator(arrays, "mine", tmp_path, "cpu", n_samples=64, log=said.append, **SMALL)
    assert not ev.label_free and ev.model.fc2.out_features == 4 and ev.model.conv1.in_channels == 3
    accuracy = [m for m in said if m.startswith("classifier accuracy on a held-out 10%")]
    assert len(accuracy) == 1 and float(accuracy[0].split(": ")[1]) > 0.9
    assert len(list(tmp_path.glob("classifier-custom-*.pt"))) == 1
    said.clear()
    evaluate.Evaluator(arrays, "mine", tmp_path, "cpu", n_samples=64, log=said.append, **SMALL)
    assert not any("training a classifier" in m for m in said)
    next(tmp_path.glob("classifier-custom-*.pt")).write_bytes(b"truncated")  # a cache that can't be trusted
    said.clear()
    evaluate.Evaluator(arrays, "mine", tmp_path, "cpu", n_samples=64, log=said.append, **SMALL)
    assert any("rebuilding the classifier cache" in m for m in said) and any("training a classifier" in m for m in said)
    result = ev(init_params(0, "cpu", 3 * 16 * 16))
    assert len(result["classes"]) == 4 and result["fd"] > 0
    small = {"train_images": images[:, :, :8, :8].copy(), "train_labels": labels}
    assert evaluate.Evaluator(small, "mine", tmp_path, "cpu", n_samples=64).label_free


def test_a_conditional_run_measures_the_asked_for_classes(tmp_path, arrays, monkeypatch, capsys):
    """--conditional: the run's measurements and `fastgan evaluate` give how often samples asked
    for each class are classified as it (the samples ask for every class in turn), overall and
    per class, beside the distance and histogram."""
    monkeypatch.setattr(evaluate, "Evaluator", functools.partial(evaluate.Evaluator, n_samples=60, **TINY))
    data_dir = tmp_path / "data"
    save_npz(data_dir / "mnist.npz", arrays)
    cfg = Config(iters=20, batch_size=8, log_every=5, sample_every=10, ckpt_every=10, eval_every=10, conditional=True,
                 device="cpu", backend="eager", out=str(tmp_path / "run"), data_dir=str(data_dir))
    out = run.train(cfg, log=lambda m: None, show_progress=False)
    evals = [m for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "fd" in m]
    assert [m["iter"] for m in evals] == [10, 20]
    for m in evals:
        assert len(m["cond_acc_classes"]) == 10 and 0 <= m["cond_acc"] <= 1
        assert m["cond_acc"] == pytest.approx(sum(m["cond_acc_classes"]) / 10, abs=1e-3)  # 6 samples asked per class
    assert evaluate.main([str(out), "--samples", "60", "--data-dir", str(data_dir), "--device", "cpu"]) == 0
    assert "asked-for class" in capsys.readouterr().out
