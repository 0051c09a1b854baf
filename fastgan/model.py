"""The seed's vanilla GAN (Goodfellow et al. 2014; wiseodd/generative-models vanilla_gan).

G: z(100) -> 128 ReLU -> 784 sigmoid.  D: x(784) -> 128 ReLU -> 1 logit.
Weights are stored (in, out) like the seed and drawn N(0, 1/sqrt(in/2)); biases are zero.

The forward functions take an `ops` namespace (linear, linear_relu, linear_sigmoid,
sigmoid_bce_with_logits) so the same model runs on plain PyTorch (`TORCH_OPS`) or on the
fused Triton kernels (`kernels.OPS`).
"""

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F

Z_DIM, H_DIM, X_DIM = 100, 128, 784
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

G_SHAPES = {"G_W1": (Z_DIM, H_DIM), "G_b1": (H_DIM,), "G_W2": (H_DIM, X_DIM), "G_b2": (X_DIM,)}
D_SHAPES = {"D_W1": (X_DIM, H_DIM), "D_b1": (H_DIM,), "D_W2": (H_DIM, 1), "D_b2": (1,)}
SHAPES = {**G_SHAPES, **D_SHAPES}
ARCH = {"z_dim": Z_DIM, "h_dim": H_DIM, "x_dim": X_DIM}


def _bce_with_logits(logits, target):
    """Mean sigmoid cross-entropy against a constant or a tensor of targets."""
    if not torch.is_tensor(target):
        target = torch.full_like(logits, float(target))
    return F.binary_cross_entropy_with_logits(logits, target)


TORCH_OPS = SimpleNamespace(
    linear=lambda x, w, b: torch.addmm(b, x, w),
    linear_relu=lambda x, w, b: torch.relu(torch.addmm(b, x, w)),
    linear_sigmoid=lambda x, w, b: torch.sigmoid(torch.addmm(b, x, w)),
    sigmoid_bce_with_logits=_bce_with_logits,
)


def init_params(seed, device):
    """The seed's init, drawn on the CPU from `seed` so every device starts identically."""
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in SHAPES.items():
        if len(shape) == 2:
            std = 1.0 / math.sqrt(shape[0] / 2.0)
            t = torch.randn(shape, generator=gen) * std
        else:
            t = torch.zeros(shape)
        params[name] = t.to(device).requires_grad_(True)
    return params


def generator(p, z, ops=TORCH_OPS):
    h = ops.linear_relu(z, p["G_W1"], p["G_b1"])
    return ops.linear_sigmoid(h, p["G_W2"], p["G_b2"])


def discriminator(p, x, ops=TORCH_OPS):
    """D's logit, shape (M, 1)."""
    h = ops.linear_relu(x, p["D_W1"], p["D_b1"])
    return ops.linear(h, p["D_W2"], p["D_b2"])


class AdamStep:
    """One seed iteration (D step, then G step) with autograd and `torch.optim.Adam`.

    This is the reference every faster path is checked against (the eager backend runs it).
    With `ops=kernels.OPS` its forward and backward run on the fused ops instead (a test of
    those ops; the fused and graph backends are fastgan.graph's Triton trainer).
    """

    def __init__(self, params, lr, ops=TORCH_OPS, capturable=False, betas=ADAM_BETAS):
        self.params = params
        self.ops = ops
        # G and D as callables, so a benchmark can wrap them (torch.compile) without copying the step.
        self.G = lambda z: generator(params, z, ops)
        self.D = lambda x: discriminator(params, x, ops)
        self.g_params = [params[k] for k in G_SHAPES]
        self.d_params = [params[k] for k in D_SHAPES]
        kw = dict(lr=lr, betas=betas, eps=ADAM_EPS, capturable=capturable)
        self.opt_g = torch.optim.Adam(self.g_params, **kw)
        self.opt_d = torch.optim.Adam(self.d_params, **kw)

    @staticmethod
    def _apply(opt, tensors, loss):
        for t, g in zip(tensors, torch.autograd.grad(loss, tensors)):
            t.grad = g
        opt.step()

    def __call__(self, x, z_d, z_g):
        """Returns a device tensor [d_loss, d_real_loss, d_fake_loss, g_loss] (no host sync)."""
        bce = self.ops.sigmoid_bce_with_logits
        with torch.no_grad():
            fake = self.G(z_d)
        d_real = bce(self.D(x), 1.0)
        d_fake = bce(self.D(fake), 0.0)
        d_loss = d_real + d_fake  # a sum of two means, as in the seed
        self._apply(self.opt_d, self.d_params, d_loss)
        loss_g = bce(self.D(self.G(z_g)), 1.0)  # non-saturating: mean BCE(D(G(z)), 1)
        self._apply(self.opt_g, self.g_params, loss_g)
        return torch.stack([d_loss, d_real, d_fake, loss_g]).detach()

    def _nets(self):
        return (("G", self.opt_g, G_SHAPES), ("D", self.opt_d, D_SHAPES))

    def state_dict(self):
        """Device copies of everything the step updates, in the checkpoint format."""
        from . import checkpoint  # here: fastgan.checkpoint validates against this module's shapes

        adam = {}
        for net, opt, names in self._nets():
            states = [opt.state.get(self.params[k], {}) for k in names]
            step = float(states[0]["step"]) if states[0] else 0
            adam[net] = (step, {m: {k: s[m] for k, s in zip(names, states) if s} for m in checkpoint.MOMENTS})
        return checkpoint.run_state(self.params, adam)

    def load_state_dict(self, state):
        """Continue from a state_dict (or a checkpoint): parameters, Adam moments and step."""
        from . import checkpoint

        with torch.no_grad():
            for k in SHAPES:
                self.params[k].copy_(state["params"][k])
        for net, opt, names in self._nets():
            step, moments = checkpoint.read_adam(state, net)
            for k in names if step else ():
                t = self.params[k]
                opt.state[t] = {"step": torch.tensor(float(step)),
                                **{m: moments[m][k].to(t.device).clone() for m in checkpoint.MOMENTS}}
