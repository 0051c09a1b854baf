"""Training batches and noise on the device: the images as a float tensor, shuffled epochs, and
fresh U(-1, 1) noise for each step (for a conditional model with the one-hot columns of a class
drawn uniformly for each sample), all from generators whose state a checkpoint holds."""

import numpy as np
import torch

from .classes import one_hot
from .errors import FastganError
from .model import Z_DIM


def images_to_tensor(images_u8, device):
    """(N, 28, 28) or (N, C, S, S) uint8 -> (N, X) float32 in [0, 1] on `device` (channels first)."""
    images_u8 = np.require(images_u8, requirements=["C", "W"])  # IDX files are read as read-only buffers
    return torch.from_numpy(images_u8).to(device).reshape(len(images_u8), -1).float().div_(255.0)


class Batcher:
    """Shuffled epochs without replacement (the last partial batch of an epoch is dropped),
    and fresh U(-1, 1) noise for the D step and again for the G step. All drawn on the device
    from two generators whose state, with the permutation and position, is checkpointed.
    `classes` C > 0: the images' rows end in their one-hot label columns (fastgan.classes), and
    each noise row ends in the one-hot columns of a class drawn uniformly (the same generator)."""

    def __init__(self, images, batch_size, seed, classes=0):
        if batch_size > len(images):
            raise FastganError(f"--batch-size {batch_size} is larger than the dataset ({len(images)} images)")
        self.images = images
        self.batch_size = batch_size
        self.classes = classes
        device = images.device
        self.data_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.noise_gen = torch.Generator(device=device).manual_seed(seed + 2)
        self.perm = self._shuffle()
        self.pos = 0

    def _shuffle(self):
        return torch.randperm(len(self.images), generator=self.data_gen, device=self.images.device)

    def draw(self, n, idx_out=None, z_out=None, uniform=None):
        """Batch indices (n, B) and noise (n, 2B, Z + C) for n iterations, written into the given
        buffers if any. Rows [:B] of each noise slab are the D step's, [B:] the G step's.
        `uniform(t, low, high, generator)` draws the noise of an unconditional model in place: torch's
        uniform_ by default; the CPU trainer passes kernels.native.uniform_ (the same numbers, faster)."""
        B, N = self.batch_size, len(self.images)
        device = self.images.device
        idx = idx_out if idx_out is not None else torch.empty(n, B, dtype=torch.long, device=device)
        filled = 0
        while filled < n:
            if self.pos + B > N:
                self.perm = self._shuffle()
                self.pos = 0
            take = min(n - filled, (N - self.pos) // B)
            idx[filled : filled + take].copy_(self.perm[self.pos : self.pos + take * B].view(take, B))
            self.pos += take * B
            filled += take
        z = z_out if z_out is not None else torch.empty(n, 2 * B, Z_DIM + self.classes, device=device)
        if self.classes:  # iteration by iteration (noise, then classes), so any split into draws gives the same
            for zi in z:
                zi[:, :Z_DIM].uniform_(-1.0, 1.0, generator=self.noise_gen)
                zi[:, Z_DIM:].copy_(one_hot(torch.randint(self.classes, (2 * B,), generator=self.noise_gen, device=device),
                                            self.classes))
        elif uniform is not None:
            uniform(z, -1.0, 1.0, self.noise_gen)
        else:
            z.uniform_(-1.0, 1.0, generator=self.noise_gen)
        return idx, z

    def next(self):
        """(x, z_d, z_g) for one iteration."""
        idx, z = self.draw(1)
        B = self.batch_size
        return self.images.index_select(0, idx[0]), z[0, :B], z[0, B:]

    def state_dict(self):
        return {
            "data_gen": self.data_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
            "perm": self.perm.clone(),
            "pos": self.pos,
        }

    def load_state_dict(self, s):
        if s["perm"].shape != (len(self.images),):
            raise FastganError(
                f"checkpoint's sampler covers {s['perm'].shape[0]} images, this dataset has {len(self.images)}"
            )
        self.data_gen.set_state(s["data_gen"])
        self.noise_gen.set_state(s["noise_gen"])
        self.perm = s["perm"].to(self.images.device)
        self.pos = int(s["pos"])
