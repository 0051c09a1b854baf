"""A trained generator as a torch.nn.Module, for notebooks and other programs: `fastgan.load`.

    import fastgan
    G = fastgan.load("runs/first")           # its best.pt, else its newest checkpoint; eval mode
    images = G.sample(16, seed=0)            # (16, C, S, S) in [0, 1]: (16, 1, 28, 28) for MNIST
    images = G(torch.rand(8, G.z_dim) * 2 - 1)
    sevens = G.sample(8, labels=7)           # a conditional model (--conditional): samples of one class

Plain PyTorch (the seed's G: z -> 128 ReLU -> C * S * S sigmoid); no Triton needed.
"""

import torch
from torch import nn

from . import checkpoint
from .classes import with_labels
from .errors import FastganError
from .model import G_SHAPES, IMAGE, Z_DIM, generator


def noise(n, seed):
    """n noise vectors z ~ U(-1, 1) (the seed's prior), drawn on the CPU from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, Z_DIM, generator=gen) * 2 - 1


class Generator(nn.Module):
    """G of a fastgan checkpoint: G(z), z (n, z_dim) ~ U(-1, 1), gives images (n, C, S, S) in
    [0, 1] (`image` = (C, S, S): MNIST's (1, 28, 28) by default). `iteration` and `path` say
    which checkpoint it is; `ema` whether these are G's EMA weights (--g-ema) rather than the
    trained ones. A conditional model (--conditional) has `classes`, its class names: G(z, labels)
    with labels (n,) class numbers."""

    z_dim = Z_DIM

    def __init__(self, params, iteration=None, path=None, ema=False, image=IMAGE, classes=()):
        super().__init__()
        for name in G_SHAPES:
            setattr(self, name, nn.Parameter(params[name].detach().clone(), requires_grad=False))
        self.iteration, self.path, self.ema, self.image = iteration, path, ema, tuple(image)
        self.classes = list(classes)

    def forward(self, z, labels=None):
        C = len(self.classes)
        if (labels is None) != (C == 0):
            raise FastganError(f"this generator is conditional: give labels, class numbers 0..{C - 1}, as G(z, labels)"
                               if C else "this generator is unconditional: it takes no labels")
        if C:
            labels = torch.as_tensor(labels, device=z.device).expand(len(z))
            if labels.min() < 0 or labels.max() >= C:
                raise FastganError(f"labels must be class numbers 0..{C - 1} ({', '.join(self.classes)})")
            z = with_labels(z, labels, C)
        return generator({name: getattr(self, name) for name in G_SHAPES}, z).view(-1, *self.image)

    @torch.no_grad()
    def sample(self, n, seed=0, labels=None):
        """n images from the noise `seed` draws (the same as `fastgan sample --seed`); a conditional
        model's of `labels` (one class number, or n), by default every class in turn."""
        if self.classes and labels is None:
            labels = torch.arange(n) % len(self.classes)
        return self(noise(n, seed).to(self.G_W1.device), labels)


def load(path, device="cpu", raw=False):
    """The generator of a run folder (its checkpoints/best.pt, else its newest checkpoint) or of a
    checkpoint file, in eval mode on `device`: G's EMA weights if the run kept them (--g-ema),
    unless `raw`; FastganError (one line) if there is none."""
    path = checkpoint.resolve_best(path, "checkpoint")
    state = checkpoint.load(path)
    ema = "ema" in state and not raw
    return Generator(checkpoint.g_weights(state, raw), state.get("iter"), path, ema,
                     checkpoint.image_shape(state), checkpoint.class_names(state)).to(device).eval()
