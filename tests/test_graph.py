"""The graph backend (fastgan.graph.GraphTrainer) against the eager reference.

On the CPU its launches run un-captured in Triton's interpreter; on a GPU the same tests
replay captured CUDA graphs, and the capture-specific tests run.

Tolerances: both sides compute in IEEE fp32 and differ only in summation order (~1e-7 relative
per op); through Adam (which moves every weight by ~lr whatever the gradient's size) and the
GAN's feedback the differences grow with the iteration count: losses rtol 1e-4 after a few
iterations, 1e-3 (atol 1e-4) after 100; parameters via helpers.assert_adam_params_close.
"""

import json

import pytest
import torch
from conftest import DEVICES, HAS_CUDA, requires_cuda
from helpers import assert_adam_params_close, fake_arrays

from fastgan import backends, checkpoint, model, run
from fastgan import classes as fastgan_classes
from fastgan.atomic import save_npz
from fastgan.batcher import Batcher
from fastgan.config import Config
from fastgan.errors import FastganError
from fastgan.graph import GraphTrainer
from fastgan.recipes import Hyper

# (device, iterations, batch, iterations per replay, losses rtol, atol)
# On a GPU machine the kernels are compiled, not interpreted, so only CUDA tensors can run them.
# On a CPU, batch 16 (kernels/configs/interpreter.json): D1's forward split over K, D's gradients
# over row chunks (d_grad; d_input_grad has one chunk at 16 rows) and G2's dx over N, as the GPU
# tables split them at batch 128.
PARITY = [("cuda", 100, 128, 10, 1e-3, 1e-4)] if HAS_CUDA else [("cpu", 4, 16, 2, 1e-4, 1e-6)]


def _images(device, n=300):
    """Pixels ~ U(0, 1), the same in every run of the suite: unseeded, the parity test's count of
    Adam's sign-flipped near-zero-gradient weights (helpers.assert_adam_params_close) varied with
    whatever the tests before it drew, and once reached 13 of G_W1's 12,800 against its bound of 12."""
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(0)).to(device)


@pytest.mark.parametrize("device,iters,batch,K,rtol,atol", PARITY)
def test_graph_matches_eager_on_the_same_batches(device, iters, batch, K, rtol, atol):
    images = _images(device)
    graph = GraphTrainer(model.init_params(4, device), 1e-3, Batcher(images, batch, seed=0), K)
    eager = model.AdamStep(model.init_params(4, device), lr=1e-3)
    splits = (graph.grad_flat["D"].shape[0], graph.log.shape[1], graph.hD_pre is not None, graph.dhG.shape[0])
    assert splits[0] > 1 and splits[1] > 1 and splits[2] and splits[3] > 1, f"the splits are not exercised: {splits}"
    for _ in range(iters // K):
        graph.prepare(K)
        idx, z = graph.idx.clone(), graph.z.clone()
        got = graph.run_prepared(K)
        graph_log = graph.log.clone()
        for i in range(K):
            want = eager(images[idx[i, 0]], z[i, 0, :batch], z[i, 0, batch:])
            torch.testing.assert_close(graph_log[i, :, 0].sum(0), want, rtol=rtol, atol=atol)  # the heads' slots
        torch.testing.assert_close(got[0], want, rtol=rtol, atol=atol)
    for k in model.SHAPES:
        assert_adam_params_close(graph.params[k], eager.params[k], steps=iters, name=k)
    g_state, e_state = graph.state_dict()["adam"], eager.state_dict()["adam"]
    for net in ("G", "D"):
        assert float(g_state[net]["step"]) == float(e_state[net]["step"]) == iters


# Every option of fastgan.recipes at once: two learning rates, cosine decay from iteration 1 to a
# quarter of each rate at iteration 8, R1 and G's EMA (0.5: it moves visibly in a few steps).
OPTIONS = Hyper(lr_d=1e-3, lr_g=5e-4, beta1=0.5, r1=1.0, g_ema=0.5, lr_decay="cosine", decay_start=1, target=8,
                decay_floor=0.25)
# Lazy R1: gamma 3 on D steps 1, 4, 7 (across replays of 2), none between
LAZY = Hyper(r1=1.0, r1_every=3)
# A growing EMA (--g-ema-rel): each step's weight from the per-iteration Adam rows
GROWING = Hyper(beta1=0.5, g_ema_rel=0.2)


def _labelled(images, classes):
    """The images with `classes` one-hot label columns (seeded labels; none for 0)."""
    labels = torch.randint(0, max(classes, 1), (len(images),), generator=torch.Generator().manual_seed(1))
    return fastgan_classes.with_labels(images, labels, classes)


@pytest.mark.parametrize("hidden,classes", [(model.H_DIM, 0), (64, 0), (300, 0), (64, 10), (512, 3)])
@pytest.mark.parametrize("device,iters,batch,K,rtol,atol", PARITY)
def test_graph_with_every_option_matches_eager(device, iters, batch, K, rtol, atol, hidden, classes):
    """R1 in the D step's gradient launch (closed form) against eager's double backward, each
    net's decaying learning rate and G's EMA in the Adam launches: the same losses, parameters,
    Adam state and EMA weights as the eager reference with the same options. At the seed's width,
    a narrower one and one past kernels.shared.WHOLE_H (D's kernels in column tiles), and
    conditional (--conditional: label columns after z and x; R1 on the pixels only)."""
    images = _labelled(_images(device), classes)
    graph = GraphTrainer(model.init_params(4, device, 784, hidden, classes), None,
                         Batcher(images, batch, seed=0, classes=classes), K, hyper=OPTIONS)
    eager = model.AdamStep(model.init_params(4, device, 784, hidden, classes), lr=None, hyper=OPTIONS)
    assert graph.P["D_W1"].shape[1:] == (784 + classes, hidden) and graph.P["G_W1"].shape[1] == 100 + classes
    _same_batches(graph, eager, images, iters, batch, K, rtol, atol)
    g_state, e_state = graph.state_dict(), eager.state_dict()
    for k in model.SHAPES:
        assert_adam_params_close(g_state["params"][k], e_state["params"][k], steps=iters, name=k)
    for k in model.G_SHAPES:  # the EMA of weights within the bound above stays within it
        assert_adam_params_close(g_state["ema"][k], e_state["ema"][k], steps=iters, name=f"ema {k}")
        assert not torch.equal(g_state["ema"][k], g_state["params"][k])
    assert graph.sample_params(0)["G_W1"].data_ptr() == graph.E["G_W1"][0].data_ptr()
    # the step sizes followed the schedule: the last step's D lr, as eager's Adam had it
    t = torch.tensor([iters])
    want_step = (OPTIONS.lrs("D", t) / (1 - OPTIONS.beta1 ** t.double())).float()
    assert graph.hyper[(iters - 1) % K, 0, 0, 0] == want_step[0]
    assert eager.opt_d.param_groups[0]["lr"] == OPTIONS.lrs("D", t).item()


def _same_batches(graph, eager, images, iters, batch, K, rtol, atol):
    """`iters` iterations of both trainers on the graph trainer's batches; the losses compared."""
    for _ in range(iters // K):
        graph.prepare(K)
        idx, z = graph.idx.clone(), graph.z.clone()
        got = graph.run_prepared(K)
        for i in range(K):
            want = eager(images[idx[i, 0]], z[i, 0, :batch], z[i, 0, batch:])
        torch.testing.assert_close(got[0], want, rtol=rtol, atol=atol)


@pytest.mark.parametrize("device,iters,batch,K,rtol,atol", PARITY)
def test_lazy_r1_matches_eager(device, iters, batch, K, rtol, atol):
    """--r1-every 3: each step's gamma from the per-iteration gamma rows (3 on steps 1, 4, 7, ...,
    0 between, whatever the replay) against eager's penalty on the same steps."""
    images = _images(device)
    graph = GraphTrainer(model.init_params(4, device), None, Batcher(images, batch, seed=0), K, hyper=LAZY)
    eager = model.AdamStep(model.init_params(4, device), lr=None, hyper=LAZY)
    _same_batches(graph, eager, images, iters, batch, K, rtol, atol)
    assert graph.gamma[:K, 0].tolist() == [3.0 if (graph.t - K + i) % 3 == 0 else 0.0 for i in range(K)]
    g_state, e_state = graph.state_dict(), eager.state_dict()
    for k in model.SHAPES:
        assert_adam_params_close(g_state["params"][k], e_state["params"][k], steps=graph.t, name=k)


@pytest.mark.parametrize("device,iters,batch,K,rtol,atol", PARITY)
def test_growing_ema_matches_eager(device, iters, batch, K, rtol, atol):
    """--g-ema-rel: each step's EMA weight from the Adam rows (prepare, per replay) against eager's
    per-step weight: the same EMA within the parameters' bound; the last row holds the last step's."""
    images = _images(device)
    graph = GraphTrainer(model.init_params(4, device), None, Batcher(images, batch, seed=0), K, hyper=GROWING)
    eager = model.AdamStep(model.init_params(4, device), lr=None, hyper=GROWING)
    _same_batches(graph, eager, images, iters, batch, K, rtol, atol)
    g_state, e_state = graph.state_dict(), eager.state_dict()
    for k in model.G_SHAPES:
        assert_adam_params_close(g_state["ema"][k], e_state["ema"][k], steps=graph.t, name=f"ema {k}")
    assert graph.hyper[K - 1, 1, 0, 3] == GROWING.ema_weights(torch.tensor([graph.t]))[0] < 1


@pytest.mark.parametrize("device", DEVICES)
def test_runs_with_options_equal_each_run_alone_bitwise(device):
    """A sweep of a run with every option, a seed run, a lazy-R1 run and a growing-EMA run equals
    each run trained alone, bitwise (the seed run alone has neither the R1 nor the EMA launch variant; in the sweep
    it has gamma 0, as the lazy run between its R1 steps)."""
    images = _images(device)
    hypers = [OPTIONS, Hyper(), LAZY, GROWING]
    sweep = GraphTrainer([model.init_params(s, device) for s in range(4)], None,
                         [Batcher(images, 16, seed=s) for s in range(4)], 2, capture=False, hyper=hypers)
    losses = sweep.advance(2)
    for r, h in enumerate(hypers):
        alone = GraphTrainer(model.init_params(r, device), None, Batcher(images, 16, seed=r), 2, capture=False, hyper=h)
        assert torch.equal(losses[r], alone.advance(2)[0])
        got, ref = sweep.state_dict(r), alone.state_dict()
        assert ("ema" in got) == ("ema" in ref) == h.keeps_ema
        for part in ("params", "ema"):
            assert all(torch.equal(got[part][k], ref[part][k]) for k in ref.get(part, {}))


@pytest.mark.parametrize("device", DEVICES)
def test_consecutive_prepares_draw_new_batches_and_noise(device):
    trainer = GraphTrainer(model.init_params(0, device), 1e-3, Batcher(_images(device), 8, seed=0), 2)
    trainer.prepare(2)
    idx, z, hyper = trainer.idx.clone(), trainer.z.clone(), trainer.hyper.clone()
    trainer.t += 2  # as run_prepared would
    trainer.prepare(2)
    assert not torch.equal(idx, trainer.idx) and not torch.equal(z, trainer.z)
    assert not torch.equal(idx[0], idx[1]) and not torch.equal(z[0], z[1])
    assert hyper[1, 0, 0, 0] != hyper[0, 0, 0, 0] and trainer.hyper[0, 0, 0, 0] != hyper[1, 0, 0, 0]


@pytest.mark.parametrize("device", DEVICES)
def test_each_run_of_a_sweep_equals_the_run_alone_bitwise(device):
    """Three runs (own seed, lr, beta1, data order, noise) trained together, one launch per
    kernel for all three, give bitwise the losses, parameters and moments of each trained alone."""
    images = _images(device)
    specs = [(0, 1e-3, 0.9), (1, 2e-4, 0.5), (2, 5e-4, 0.0)]
    batchers = [Batcher(images, 16, seed=seed) for seed, _, _ in specs]  # splits exercised (see PARITY)
    sweep = GraphTrainer([model.init_params(seed, device) for seed, _, _ in specs], [lr for _, lr, _ in specs],
                         batchers, 2, capture=False, betas=([b1 for _, _, b1 in specs], 0.999))
    losses = sweep.advance(2)
    assert losses.shape == (3, 4)
    for r, (seed, lr, b1) in enumerate(specs):
        alone = GraphTrainer(model.init_params(seed, device), lr, Batcher(images, 16, seed=seed), 2, capture=False,
                             betas=(b1, 0.999))
        want = alone.advance(2)[0]
        assert torch.equal(losses[r], want)
        got, ref = sweep.state_dict(r), alone.state_dict()
        assert all(torch.equal(got["params"][k], ref["params"][k]) for k in model.SHAPES)
        for net in ("G", "D"):
            for moment in ("exp_avg", "exp_avg_sq"):
                assert all(torch.equal(got["adam"][net][moment][k], ref["adam"][net][moment][k])
                           for k in ref["adam"][net][moment])


@requires_cuda
def test_replay_equals_uncaptured_launches():
    """Capture is exact: 40 iterations replayed from a captured graph give bitwise the same
    losses and parameters as the same launches run un-captured (same kernels, no atomics)."""
    images = _images("cuda", 4096)
    a = GraphTrainer(model.init_params(1, "cuda"), 1e-3, Batcher(images, 128, seed=0), 10, capture=True)
    b = GraphTrainer(model.init_params(1, "cuda"), 1e-3, Batcher(images, 128, seed=0), 10, capture=False)
    a.warm_up()  # compiles, captures the 10-iteration graph and checks one replay; state unchanged
    assert 10 in a.graphs
    for _ in range(4):
        la, lb = a.advance(10), b.advance(10)
    assert torch.equal(la, lb)
    assert all(torch.equal(a.params[k], b.params[k]) for k in model.SHAPES)


@requires_cuda
def test_replays_differ_and_training_moves():
    """Each replay reads the inputs `prepare` wrote for it (new batches, noise, Adam terms):
    four replays give four different, finite loss logs rather than one frozen iteration."""
    trainer = GraphTrainer(model.init_params(2, "cuda"), 1e-3, Batcher(_images("cuda", 4096), 128, seed=0), 5)
    trainer.warm_up()
    logs = []
    for _ in range(4):
        trainer.advance(5)
        logs.append(trainer.log.clone())
    assert all(not torch.equal(x, y) for x, y in zip(logs, logs[1:]))
    assert torch.isfinite(torch.stack(logs)).all()


@pytest.mark.parametrize("options", [{}, {"r1": 1.0, "g_ema": 0.9, "lr_g": 5e-4}])
def test_resume_equals_one_go_on_graph_backend(tmp_path, small_mnist, options):
    """Also with R1, G's EMA and two learning rates: the EMA weights resume bitwise too."""
    device = DEVICES[0]
    data_dir = tmp_path / "data"
    save_npz(data_dir / "mnist.npz", fake_arrays(300, 50))

    def cfg(out, iters, **kw):
        return Config(iters=iters, batch_size=8, log_every=1, sample_every=100, ckpt_every=100, iters_per_replay=2,
                      device=device, backend="graph", out=str(out) if out else None, data_dir=str(data_dir), **options,
                      **kw)

    quiet = dict(log=lambda m: None, show_progress=False)
    one = run.train(cfg(tmp_path / "one", 3), **quiet)
    run.train(cfg(tmp_path / "two", 2), **quiet)
    two = run.train(cfg(None, 3, resume=str(tmp_path / "two")), **quiet)
    a = checkpoint.load(one / "checkpoints" / "0000003.pt")
    b = checkpoint.load(two / "checkpoints" / "0000003.pt")
    assert all(torch.equal(a["params"][k], b["params"][k]) for k in model.SHAPES)
    assert ("ema" in b) == bool(options) and all(torch.equal(a["ema"][k], b["ema"][k]) for k in b.get("ema", {}))
    assert float(b["adam"]["G"]["step"]) == 3
    lines = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    assert [m["iter"] for m in lines] == [1, 2, 3]


def test_graph_start_up_failure_falls_back_or_says_one_line(monkeypatch):
    """A compile, capture or replay-check failure in warm_up: `--backend auto` trains eager with a
    one-line notice naming the error; an explicit `--backend graph` stops with one line."""
    def broken(self):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(GraphTrainer, "warm_up", broken)
    device = torch.device(DEVICES[0])
    batcher = Batcher(_images(device), 8, seed=0)
    logs = []
    runs = [backends.RunInit(model.init_params(0, device), Hyper(), batcher)]
    trainer = backends.make_trainer("graph", runs, Config(backend="auto"), device, logs.append)
    assert trainer.backend == "eager"
    assert logs == ["notice: the CUDA-graph backend failed at start-up (RuntimeError: CUDA error: operation not permitted when stream is capturing); "
                    "training with the eager backend instead"]
    with pytest.raises(FastganError, match=r"^--backend graph failed at start-up \(RuntimeError: CUDA error: operation not permitted when stream is capturing\); try --backend eager$"):
        backends.make_trainer("graph", runs, Config(backend="graph"), device, logs.append)


def test_one_state_dict_moves_between_eager_and_triton_trainers():
    """state_dict / load_state_dict carry parameters, Adam moments and step in the checkpoint
    format, so a run moves between the reference and the Triton trainer with one call."""
    device = DEVICES[0]
    images = _images(device)
    eager = model.AdamStep(model.init_params(3, device), lr=1e-3)
    batcher = Batcher(images, 8, seed=0)
    for _ in range(2):
        eager(*batcher.next())
    state = eager.state_dict()
    triton_trainer = GraphTrainer(model.init_params(9, device), 1e-3, Batcher(images, 8, seed=0), 2, capture=False)
    triton_trainer.load_state_dict(state)
    again = triton_trainer.state_dict()
    assert all(torch.equal(again["params"][k], state["params"][k]) for k in model.SHAPES)
    for net in ("G", "D"):
        assert float(again["adam"][net]["step"]) == 2
        for moment in ("exp_avg", "exp_avg_sq"):
            assert all(torch.equal(again["adam"][net][moment][k], state["adam"][net][moment][k])
                       for k in state["adam"][net][moment])
    back = model.AdamStep(model.init_params(9, device), lr=1e-3)
    back.load_state_dict(again)
    x, zd, zg = batcher.next()
    torch.testing.assert_close(back(x, zd, zg), eager(x, zd, zg), rtol=0, atol=0)


def test_memory_per_run_and_what_fits():
    """The fit check's estimate covers what a trainer allocates per run (measured here on the
    CPU by the buffers' sizes)."""
    from fastgan.buffers import bytes_per_run

    images = _images("cpu", 64)
    t = GraphTrainer([model.init_params(s, "cpu") for s in range(2)], [1e-3] * 2,
                     [Batcher(images, 8, seed=s) for s in range(2)], 5, capture=False)
    held = sum(v.numel() * v.element_size() for k, v in vars(t).items() if torch.is_tensor(v) and k != "images")
    held += sum(b.numel() * b.element_size() for d in (t.flat, t.grad_flat, t.m_flat, t.v_flat) for b in d.values())
    assert 0.9 * held / 2 <= bytes_per_run(8, 5) <= 1.2 * held / 2
    assert bytes_per_run(128, 100) < 20 * 2**20 < bytes_per_run(8192, 100)  # noise dominates at large batch


@pytest.mark.parametrize("twins", [False, True], ids=["triton", "cpu-twins"])
def test_precision_reaches_every_product(monkeypatch, twins):
    """`precision` is passed to each of the iteration's 8 matrix-product launches (6 linear ones,
    D's gradients and D's input gradient), the Triton launchers' and their CPU twins'; unknown refused."""
    from fastgan import kernels
    from fastgan.kernels import twins as cpu_twins

    seen = []
    device = DEVICES[0]  # gpu_check.sh runs this file on a GPU, where launchers refuse CPU tensors
    images = _images(device, n=64)
    trainer = GraphTrainer(model.init_params(0, device), 1e-3, Batcher(images, 8, seed=0), 1, capture=False,
                           precision="tf32x3", twins=twins and device == "cpu")
    assert trainer.L is (cpu_twins if twins and device == "cpu" else kernels)
    for name, at in (("linear_act_forward", 5), ("linear_act_backward", 8), ("d_grad", "precision"),
                     ("d_input_grad", "precision")):
        fn = getattr(trainer.L, name)
        monkeypatch.setattr(trainer.L, name, lambda *a, _fn=fn, _at=at, **kw: (
            seen.append(kw[_at] if isinstance(_at, str) else a[_at]), _fn(*a, **kw))[1])
    trainer.advance(1)
    assert seen == ["tf32x3"] * 8
    with pytest.raises(ValueError, match="precision must be one of ieee, tf32x3, tf32, got 'fp16'"):
        GraphTrainer(model.init_params(0, device), 1e-3, Batcher(images, 8, seed=0), 1, capture=False, precision="fp16")


def _losses(out):
    return torch.tensor([[m[k] for k in ("d_loss", "d_real_loss", "d_fake_loss", "g_loss")]
                         for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())])


# `--backend fused` (this trainer un-captured) against `--backend eager` through a whole run:
# same seed, same batches, the tolerances above.
@pytest.mark.parametrize(
    "device, iters, batch, rtol, atol",
    # On a GPU machine the kernels are compiled, not interpreted, so only CUDA tensors can run them.
    [("cuda", 100, 128, 1e-3, 1e-4)] if HAS_CUDA else [("cpu", 3, 8, 1e-4, 1e-6)],
)
def test_train_fused_matches_eager(tmp_path, small_mnist, device, iters, batch, rtol, atol):
    data_dir = tmp_path / "data"
    save_npz(data_dir / "mnist.npz", fake_arrays(300, 50))
    outs = {}
    for backend in ("eager", "fused"):
        cfg = Config(iters=iters, batch_size=batch, log_every=1, sample_every=1000, ckpt_every=1000,
                     device=device, backend=backend, out=str(tmp_path / backend), data_dir=str(data_dir))
        outs[backend] = _losses(run.train(cfg, log=lambda m: None, show_progress=False))
    assert outs["fused"].shape == (iters, 4)
    torch.testing.assert_close(outs["fused"], outs["eager"], rtol=rtol, atol=atol)


def test_cli_precisions_are_the_kernels():
    """fastgan.config keeps its own list (it is read without importing Triton): the kernels' one."""
    from fastgan.kernels import shared

    from fastgan import config

    assert config.PRECISIONS == shared.PRECISIONS
