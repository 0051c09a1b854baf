"""The Triton trainer on a CPU through its launches' CPU twins (kernels.twins): the fast CPU path
(`--backend auto` and `fused` on a CPU), against the eager reference on the same batches, with
every option, a sweep's runs against each run alone (bitwise), resume, and a run moving between
backends through its state.

Tolerances as test_graph's (both sides IEEE fp32, differing in summation order): losses rtol
1e-4 after a few iterations, parameters via helpers.assert_adam_params_close.
"""

import contextlib

import pytest
import torch
from helpers import assert_adam_params_close
from test_graph import GROWING, LAZY, OPTIONS, _images, _labelled

from fastgan import cpu_workers, model
from fastgan.batcher import Batcher
from fastgan.buffers import ONE_SLOT
from fastgan.graph import GraphTrainer, cpu_twins
from fastgan.recipes import Hyper


def _trainer(seeds, hypers, batch=16, K=2, images=None, hidden=model.H_DIM, classes=0):
    images = _labelled(_images("cpu"), classes) if images is None else images
    single = isinstance(seeds, int)
    seeds, hypers = ([seeds], [hypers]) if single else (seeds, hypers)
    params = [model.init_params(s, "cpu", images.shape[1] - classes, hidden, classes) for s in seeds]
    batchers = [Batcher(images, batch, seed=s, classes=classes) for s in seeds]
    return GraphTrainer(params[0] if single else params, None, batchers[0] if single else batchers, K, capture=False,
                        hyper=hypers[0] if single else hypers, twins=True)


@pytest.mark.parametrize("hyper,batch,hidden,classes", [
    *[(h, b, model.H_DIM, 0) for h in (Hyper(), OPTIONS, LAZY) for b in (16, 128)],
    (OPTIONS, 16, 64, 0), (OPTIONS, 16, 512, 0), (Hyper(), 7, 1, 0), (OPTIONS, 16, 64, 10), (OPTIONS, 16, 512, 10),
    (GROWING, 16, model.H_DIM, 0)],
    ids=[*[f"{h}-{b}" for h in ("seed", "every-option", "lazy-r1") for b in (16, 128)],
         "every-option-hidden-64", "every-option-hidden-512", "seed-hidden-1", "every-option-hidden-64-conditional",
         "every-option-hidden-512-conditional", "growing-ema"])
def test_twins_match_eager_on_the_same_batches(hyper, batch, hidden, classes):
    images = _labelled(_images("cpu", 600), classes)
    trainer = _trainer(4, hyper, batch, K=2, images=images, hidden=hidden, classes=classes)
    assert trainer.twins and trainer.grad_flat["D"].shape[0] == ONE_SLOT["D"] and trainer.hD_pre is None
    assert trainer.P["G_W1"].shape == (1, model.Z_DIM + classes, hidden)
    assert trainer.P["D_W1"].shape == (1, 784 + classes, hidden)
    eager = model.AdamStep(model.init_params(4, "cpu", 784, hidden, classes), lr=None, hyper=hyper)
    iters = 8
    for _ in range(iters // 2):
        trainer.prepare(2)
        idx, z = trainer.idx.clone(), trainer.z.clone()
        got = trainer.run_prepared(2)
        log = trainer.log.clone()
        for i in range(2):
            want = eager(images[idx[i, 0]], z[i, 0, :batch], z[i, 0, batch:])
            torch.testing.assert_close(log[i, 0, 0], want, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(got[0], want, rtol=1e-4, atol=1e-6)
    got, ref = trainer.state_dict(), eager.state_dict()
    for k in model.SHAPES:
        assert got["params"][k].shape == model.shapes(784, hidden, classes)[k]
        assert_adam_params_close(got["params"][k], ref["params"][k], steps=iters, name=k)
    for k in ref.get("ema", {}):
        assert_adam_params_close(got["ema"][k], ref["ema"][k], steps=iters, name=f"ema {k}")
    for net in ("G", "D"):
        assert float(got["adam"][net]["step"]) == float(ref["adam"][net]["step"]) == iters


@pytest.fixture
def threads(request):
    """torch's CPU threads set to the test's parameter, and back after."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("hidden,classes", [(model.H_DIM, 0), (300, 0), (64, 10)])
@pytest.mark.parametrize("threads", [1, 2], indirect=True)
def test_each_run_of_a_sweep_equals_the_run_alone_bitwise(threads, hidden, classes):
    """Three runs (one with every option, one with a growing EMA) trained together give bitwise the losses, parameters,
    moments and EMA of each trained alone on as many threads: on 1, one after another in this
    process; on 2, spread over 2 processes of one thread each (fastgan.cpu_workers: run 1 in a
    worker, runs 0 and 2 here), which needs MKL's products thread-invariant (conftest sets
    MKL_CBWR as `fastgan train` does). The seed's width, a wider one (--hidden 300) and a
    conditional model."""
    hypers = [OPTIONS, Hyper(lr_d=2e-4, lr_g=2e-4, beta1=0.5, g_ema_rel=0.1), Hyper(r1=3.0, r1_every=2)]
    sweep = _trainer([0, 1, 2], hypers, hidden=hidden, classes=classes)
    invariant = cpu_workers.thread_invariant(16, 784 + classes, 2, hidden, model.Z_DIM + classes)
    assert (sweep.workers is not None) == (threads > 1 and invariant)
    losses = torch.cat([sweep.advance(2) for _ in range(2)]).view(2, 3, 4)[-1]
    for r, h in enumerate(hypers):
        alone = _trainer(r, h, hidden=hidden, classes=classes)
        alone.advance(2)
        assert torch.equal(losses[r], alone.advance(2)[0])
        got, ref = sweep.state_dict(r), alone.state_dict()
        for part in ("params", "ema"):
            assert all(torch.equal(got[part][k], ref[part][k]) for k in ref.get(part, {}))
        for net in ("G", "D"):
            for moment in ("exp_avg", "exp_avg_sq"):
                assert all(torch.equal(got["adam"][net][moment][k], ref["adam"][net][moment][k])
                           for k in ref["adam"][net][moment])


@pytest.mark.parametrize("hyper", [OPTIONS, GROWING], ids=["every-option", "growing-ema"])
def test_resume_is_exact(hyper):
    """N iterations, a state_dict into a new trainer (and the sampler's state), M more: bitwise
    the parameters and EMA of N + M in one go (a growing EMA's weights follow the step count)."""
    whole = _trainer(3, hyper)
    for _ in range(3):
        whole.advance(2)
    first = _trainer(3, hyper)
    first.advance(2)
    state, sampler = first.state_dict(), first.batchers[0].state_dict()
    second = _trainer(5, hyper)  # other initial weights: all replaced
    second.load_state_dict(state)
    second.batchers[0].load_state_dict(sampler)
    second.advance(2)
    second.advance(2)
    got, want = second.state_dict(), whole.state_dict()
    assert all(torch.equal(got["params"][k], want["params"][k]) for k in model.SHAPES)
    assert all(torch.equal(got["ema"][k], want["ema"][k]) for k in model.G_SHAPES)


@pytest.mark.parametrize("hyper,classes", [(OPTIONS, 0), (LAZY, 10)], ids=["every-option", "lazy-r1-conditional"])
def test_trusted_iterations_equal_checked_ones_and_each_advance_checks_its_first(monkeypatch, hyper, classes):
    """After each advance's first iteration the twins skip their argument checks
    (kernels.twins.trusted): bitwise the parameters and EMA of a trainer whose every iteration is
    checked; and a wrong buffer is still refused in one line, by the first iteration of an advance."""
    trusted = _trainer(3, hyper, K=5, classes=classes)
    for n in (5, 3, 5):
        trusted.advance(n)
    with monkeypatch.context() as m:
        m.setattr(cpu_twins, "trusted", contextlib.nullcontext)
        checked = _trainer(3, hyper, K=5, classes=classes)
        for n in (5, 3, 5):
            checked.advance(n)
    got, want = trusted.state_dict(), checked.state_dict()
    assert got.keys() == want.keys()
    for part in ("params", "ema"):
        assert all(torch.equal(got[part][k], want[part][k]) for k in want.get(part, ()))
    views = trusted._step_views  # the noise in float64: the first launch's check refuses it
    monkeypatch.setattr(trusted, "_step_views", lambda i, s, losses: (views(i, s, losses)[0].double(), *views(i, s, losses)[1:]))
    with pytest.raises(ValueError, match=r"^linear_act_forward \(CPU\): x must be torch.float32") as e:
        trusted.advance(5)
    assert "\n" not in str(e.value) and not cpu_twins._trusted


@pytest.mark.parametrize("hyper,runs,classes", [(Hyper(), 1, 0), (OPTIONS, 1, 0), (LAZY, 3, 0), (OPTIONS, 1, 10)],
                         ids=["seed", "every-option", "lazy-r1-3-runs", "every-option-conditional"])
@pytest.mark.parametrize("threads", [1], indirect=True)  # a sweep's runs in this process, where the plans are
def test_replayed_iterations_equal_the_launches_called_one_by_one(threads, hyper, runs, classes):
    """With the C++ twins an advance's later iterations are recorded once per length (and run
    slices) and replayed from C++ (kernels.twins.replay): bitwise the losses, parameters and EMA of
    the same launches called one by one from Python, over advances of two lengths, each plan
    replayed again; a conditional model (label columns copied outside the launches) records none."""
    reason = cpu_twins.native.available()
    if reason:
        pytest.skip(f"the C++ twins cannot be built here: {reason}")
    seeds, hypers = (3, hyper) if runs == 1 else (list(range(runs)), [hyper] * runs)
    replayed, called = _trainer(seeds, hypers, K=5, classes=classes), _trainer(seeds, hypers, K=5, classes=classes)
    called.plans = None
    for n in (5, 3, 5, 3):
        got, want = replayed.advance(n), called.advance(n)
        assert torch.equal(got, want) and torch.isfinite(got).all()
    if classes:
        assert replayed.plans is None
    else:  # 10 launches per iteration and run, the first iteration of each advance called from Python
        assert sorted((key[0], len(plan)) for key, plan in replayed.plans.items()) == [(3, 2 * 10 * runs), (5, 4 * 10 * runs)]
    for r in range(runs):
        a, b = replayed.state_dict(r), called.state_dict(r)
        for part in ("params", "ema"):
            assert all(torch.equal(a[part][k], b[part][k]) for k in b.get(part, ()))


@pytest.mark.parametrize("hyper", [Hyper(), OPTIONS], ids=["seed", "every-option"])
def test_an_advance_returns_its_last_iterations_losses(hyper):
    """On a CPU only an advance's first and last iterations compute their losses: advancing 5 at
    once gives the losses, parameters and EMA of advancing 1 at a time, bitwise."""
    whole, steps = _trainer(3, hyper, K=5), _trainer(3, hyper, K=5)
    got = whole.advance(5).clone()
    for _ in range(5):
        want = steps.advance(1).clone()
    assert torch.equal(got, want) and torch.isfinite(got).all()
    a, b = whole.state_dict(), steps.state_dict()
    for part in ("params", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in b.get(part, ()))


def test_a_run_moves_to_the_eager_backend_and_back_through_its_state():
    images = _images("cpu")
    trainer = _trainer(6, Hyper(), images=images)
    trainer.advance(2)
    eager = model.AdamStep(model.init_params(0, "cpu"), lr=1e-3)
    eager.load_state_dict(trainer.state_dict())
    batcher = trainer.batchers[0]
    for _ in range(2):
        eager(*batcher.next())
    back = _trainer(0, Hyper(), images=images)
    back.load_state_dict(eager.state_dict())
    assert back.t == 4
    assert all(torch.equal(back.params[k], eager.params[k]) for k in model.SHAPES)
    assert torch.isfinite(back.advance(2)).all()


def test_grids_draw_with_plain_torch_ops():
    """The CPU trainer's samples come from the plain-PyTorch forward (no Triton launch on a CPU)."""
    trainer = _trainer(0, Hyper())
    assert trainer.ops is model.TORCH_OPS
    z = torch.rand(4, model.Z_DIM) * 2 - 1
    assert model.generator(trainer.sample_params(0), z, trainer.ops).shape == (4, 784)
