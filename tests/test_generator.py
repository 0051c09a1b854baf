"""fastgan.load / fastgan.generator: a run's generator as a torch.nn.Module, equal to the
checkpoint's G in the library's own math."""

import pytest
import torch
from helpers import fake_arrays
from torch import nn

import fastgan
from fastgan import checkpoint, model, run
from fastgan.atomic import save_npz
from fastgan.config import Config
from fastgan.errors import FastganError
from fastgan.generator import Generator, noise


@pytest.fixture
def trained(tmp_path, small_mnist):
    save_npz(tmp_path / "data" / "mnist.npz", fake_arrays(300, 50))
    cfg = Config(iters=20, batch_size=8, log_every=5, sample_every=10, ckpt_every=10, eval_every=1000,
                 device="cpu", backend="eager", out=str(tmp_path / "run"), data_dir=str(tmp_path / "data"))
    return run.train(cfg, log=lambda m: None, show_progress=False)


def test_load_gives_the_runs_generator_in_eval_mode(trained):
    G = fastgan.load(trained)
    assert isinstance(G, nn.Module) and not G.training and G.z_dim == model.Z_DIM
    assert G.iteration == 20 and G.path == trained / "checkpoints" / "0000020.pt"
    assert not any(p.requires_grad for p in G.parameters())
    z = torch.rand(5, G.z_dim) * 2 - 1
    images = G(z)
    params = checkpoint.load(G.path)["params"]
    assert images.shape == (5, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, model.generator(params, z).view(5, 1, 28, 28))


def test_sample_is_seeded_and_a_checkpoint_file_loads_too(trained):
    G = fastgan.load(trained / "checkpoints" / "0000010.pt")
    assert G.iteration == 10
    a, b = G.sample(4, seed=3), G.sample(4, seed=3)
    assert a.shape == (4, 1, 28, 28) and torch.equal(a, b) and not torch.equal(a, G.sample(4, seed=4))
    assert torch.equal(a, G(noise(4, 3)))


def test_nothing_to_load_is_one_line(tmp_path):
    with pytest.raises(FastganError, match="no such file or folder"):
        fastgan.load(tmp_path / "nope")
    with pytest.raises(FastganError, match="no checkpoints in"):
        fastgan.load(tmp_path)


def test_generator_from_params_needs_only_gs():
    params = model.init_params(0, "cpu")
    G = Generator({k: params[k] for k in model.G_SHAPES})
    assert [name for name, _ in G.named_parameters()] == list(model.G_SHAPES)


def test_a_file_that_is_no_checkpoint_is_one_line_without_resume_advice(tmp_path):
    """fastgan.load of a file that is not a checkpoint used to say "resume from an earlier one":
    loading is not resuming."""
    bad = tmp_path / "notes.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(FastganError) as err:
        fastgan.load(bad)
    assert str(err.value) == (f"{bad} is unreadable as a checkpoint (UnpicklingError): not a fastgan checkpoint, or a "
                              "truncated one (then an earlier checkpoint of the same run will do)")
