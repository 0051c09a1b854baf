"""`--backend fused` against `--backend eager`: same seed, same batches, same losses.

Tolerance. Both backends compute in IEEE fp32 and differ only in summation order (~1e-7
relative per op). Through Adam (which moves every weight by ~lr whatever the gradient's size)
and the GAN's feedback those differences grow with the iteration count: after a few iterations
they stay near 1e-6, so the CPU check uses rtol 1e-4; over 100 iterations on a GPU we allow
rtol 1e-3 (atol 1e-4 for losses near zero).
"""

import json

import pytest
import torch
from conftest import DEVICES, HAS_CUDA
from helpers import assert_adam_params_close, fake_arrays

from fastgan import model, run
from fastgan.config import Config
from fastgan.data import save_cache

import kernels


def _losses(out):
    return torch.tensor([[m[k] for k in ("d_loss", "d_real_loss", "d_fake_loss", "g_loss")]
                         for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())])


@pytest.mark.parametrize("device", DEVICES)
def test_fused_step_matches_eager_step(device):
    torch.manual_seed(0)
    batches = [tuple(t.to(device) for t in (torch.rand(6, 784), torch.rand(6, 100) * 2 - 1, torch.rand(6, 100) * 2 - 1))
               for _ in range(2)]
    eager = model.AdamStep(model.init_params(5, device), lr=1e-3)
    fused = model.AdamStep(model.init_params(5, device), lr=1e-3, ops=kernels.OPS)
    for b in batches:
        torch.testing.assert_close(fused(*b), eager(*b), rtol=1e-5, atol=1e-6)
    for k in model.SHAPES:
        assert_adam_params_close(fused.params[k], eager.params[k], steps=len(batches), name=k)


@pytest.mark.parametrize(
    "device, iters, batch, rtol, atol",
    # On a GPU machine the kernels are compiled, not interpreted, so only CUDA tensors can run them.
    [("cuda", 100, 128, 1e-3, 1e-4)] if HAS_CUDA else [("cpu", 3, 8, 1e-4, 1e-6)],
)
def test_train_fused_matches_eager(tmp_path, small_mnist, device, iters, batch, rtol, atol):
    data_dir = tmp_path / "data"
    save_cache(data_dir / "mnist.npz", fake_arrays(300, 50))
    outs = {}
    for backend in ("eager", "fused"):
        cfg = Config(iters=iters, batch_size=batch, log_every=1, sample_every=1000, ckpt_every=1000,
                     device=device, backend=backend, out=str(tmp_path / backend), data_dir=str(data_dir))
        outs[backend] = _losses(run.train(cfg, log=lambda m: None, show_progress=False))
    assert outs["fused"].shape == (iters, 4)
    torch.testing.assert_close(outs["fused"], outs["eager"], rtol=rtol, atol=atol)
