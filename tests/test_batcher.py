"""fastgan.batcher: epochs without replacement, fresh uniform noise, exact state round trip."""

import pytest
import torch

from fastgan.batcher import Batcher
from fastgan.errors import FastganError


def _images(n=50):
    return torch.rand(n, 784)


def test_batcher_epochs_without_replacement():
    images = _images(50)
    b = Batcher(images, batch_size=8, seed=3)
    seen = []
    for _ in range(6):  # 6 * 8 = 48 of 50: one epoch, the last partial batch dropped
        x, z_d, z_g = b.next()
        rows = [int(torch.nonzero((images == r).all(dim=1))[0]) for r in x]
        seen += rows
    assert len(set(seen)) == 48
    x, _, _ = b.next()  # a new epoch begins
    assert b.pos == 8


def test_batcher_noise_is_uniform_and_fresh():
    b = Batcher(_images(), batch_size=16, seed=0)
    _, z_d, z_g = b.next()
    assert z_d.shape == (16, 100) and z_d.min() >= -1 and z_d.max() <= 1
    assert not torch.equal(z_d, z_g)
    assert z_d.mean().abs() < 0.1


def test_batcher_state_roundtrip():
    images = _images()
    a = Batcher(images, 8, seed=1)
    for _ in range(9):
        a.next()
    state = a.state_dict()
    expected = [a.next() for _ in range(4)]
    b = Batcher(images, 8, seed=99)
    b.load_state_dict(state)
    for want, got in zip(expected, [b.next() for _ in range(4)]):
        for w, g in zip(want, got):
            assert torch.equal(w, g)


def test_batch_larger_than_dataset():
    with pytest.raises(FastganError, match="larger than the dataset"):
        Batcher(_images(10), batch_size=11, seed=0)


def test_conditional_noise_ends_in_a_uniform_class_one_hot():
    """classes=C: each noise row is U(-1, 1) noise then the one-hot of a class drawn uniformly;
    the images' rows are used as given (their label columns included); C = 0 draws as before."""
    images = torch.rand(50, 787)
    b = Batcher(images, 16, seed=0, classes=3)
    idx, z = b.draw(200)
    assert z.shape == (200, 32, 103) and z[..., :100].min() >= -1 and z[..., :100].max() <= 1
    onehot = z[..., 100:]
    assert torch.equal(onehot.sum(-1), torch.ones(200, 32)) and set(onehot.unique().tolist()) == {0.0, 1.0}
    freq = onehot.reshape(-1, 3).mean(0)
    assert (freq - 1 / 3).abs().max() < 0.02  # 6,400 draws: 3 sigma of a third is 0.018
    one = Batcher(images, 16, seed=0, classes=3)  # draws of any size give the same sequence (the trainers' chunks vary)
    x, z_d, _ = one.next()
    assert torch.equal(x, images[idx[0]]) and torch.equal(z_d, z[0, :16])
    assert torch.equal(torch.cat([one.draw(k)[1] for k in (3, 1, 195)]), z[1:])
    plain, again = Batcher(_images(), 16, seed=0), Batcher(_images(), 16, seed=0, classes=0)
    assert torch.equal(plain.draw(3)[1], again.draw(3)[1])
