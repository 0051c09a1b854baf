"""The seed's vanilla GAN (Goodfellow et al. 2014; wiseodd/generative-models vanilla_gan).

G: z(100) -> 128 ReLU -> 784 sigmoid.  D: x(784) -> 128 ReLU -> 1 logit.
Weights are stored (in, out) like the seed and drawn N(0, 1/sqrt(in/2)); biases are zero.
Other images (fastgan.images): the same MLP with X = C * S * S inputs and outputs for C x S x S
images, flattened channels first; MNIST's X = 784 = 1 x 28 x 28 is the default everywhere.
Other widths (--hidden H): G's and D's hidden layers H wide instead of 128 (H_DIM, the default
everywhere: the seed's model is unchanged). Conditional (--conditional, fastgan.classes): C one-hot
label columns after z and after x, so G_W1 is (Z + C, H) and D_W1 (X + C, H); C = 0 by default.

The forward functions take an `ops` namespace (linear, linear_relu, linear_sigmoid,
sigmoid_bce_with_logits) so the same model runs on plain PyTorch (`TORCH_OPS`) or on the
fused Triton kernels (`kernels.OPS`).
"""

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from .recipes import ADAM_BETAS, ADAM_EPS, Hyper

Z_DIM, H_DIM, X_DIM = 100, 128, 784
MAX_HIDDEN = 4096  # --hidden's largest width (every backend trains 1..MAX_HIDDEN)

IMAGE = (1, 28, 28)  # MNIST's channels, height, width


def g_shapes(x_dim=X_DIM, h_dim=H_DIM, classes=0):
    return {"G_W1": (Z_DIM + classes, h_dim), "G_b1": (h_dim,), "G_W2": (h_dim, x_dim), "G_b2": (x_dim,)}


def d_shapes(x_dim=X_DIM, h_dim=H_DIM, classes=0):
    return {"D_W1": (x_dim + classes, h_dim), "D_b1": (h_dim,), "D_W2": (h_dim, 1), "D_b2": (1,)}


def nets(x_dim=X_DIM, h_dim=H_DIM, classes=0):
    """net -> its parameters' shapes, for images of x_dim values, hidden layers h_dim wide and
    `classes` label columns (0: unconditional)."""
    return {"G": g_shapes(x_dim, h_dim, classes), "D": d_shapes(x_dim, h_dim, classes)}


def shapes(x_dim=X_DIM, h_dim=H_DIM, classes=0):
    return {**g_shapes(x_dim, h_dim, classes), **d_shapes(x_dim, h_dim, classes)}


G_SHAPES, D_SHAPES, SHAPES = g_shapes(), d_shapes(), shapes()  # the seed's; every size has these names
ARCH = {"z_dim": Z_DIM, "h_dim": H_DIM, "x_dim": X_DIM}


def arch(image=IMAGE, h_dim=H_DIM, class_names=None):
    """A checkpoint's architecture entry for C x S x S images, hidden layers h_dim wide and (a
    conditional model) its classes' names: the seed's is ARCH (as ever); other images also name
    the image shape, a conditional model its classes."""
    c, h, w = image
    entry = {**ARCH, "h_dim": h_dim}
    if tuple(image) != IMAGE:
        entry.update(x_dim=c * h * w, image=[c, h, w])
    return {**entry, "classes": list(class_names)} if class_names else entry


def image_of(arch_entry):
    """(C, S, S) from an architecture entry (ARCH: MNIST's)."""
    return tuple(arch_entry.get("image", IMAGE))


def hidden_of(params):
    """The hidden width of a run's parameters (name -> tensor, as init_params draws them)."""
    return params["G_W1"].shape[-1]


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


def init_params(seed, device, x_dim=X_DIM, h_dim=H_DIM, classes=0):
    """The seed's init, drawn on the CPU from `seed` so every device starts identically."""
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for name, shape in shapes(x_dim, h_dim, classes).items():
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

    `hyper` (fastgan.recipes.Hyper) adds to the seed's step: each net's own learning rate and
    its decay, the R1 penalty by autograd's double backward (the oracle of the Triton trainer's
    closed form), and an EMA of G's weights. Without it: the seed's step with `lr` and `betas`.
    """

    def __init__(self, params, lr, ops=TORCH_OPS, capturable=False, betas=ADAM_BETAS, hyper=None):
        self.hyper = hyper = hyper or Hyper(lr, lr, betas[0])
        self.params = params
        self.ops = ops
        # G and D as callables, so a benchmark can wrap them (torch.compile) without copying the step.
        self.G = lambda z: generator(params, z, ops)
        self.D = lambda x: discriminator(params, x, ops)
        self.g_params = [params[k] for k in G_SHAPES]
        self.d_params = [params[k] for k in D_SHAPES]
        kw = dict(betas=(hyper.beta1, betas[1]), eps=ADAM_EPS, capturable=capturable)
        self.opt_g = torch.optim.Adam(self.g_params, lr=hyper.lr_g, **kw)
        self.opt_d = torch.optim.Adam(self.d_params, lr=hyper.lr_d, **kw)
        # G's EMA weights (each step's 1 - beta as float32, as the Triton trainer reads it), else None
        self.ema = {k: params[k].detach().clone() for k in G_SHAPES} if hyper.keeps_ema else None
        self.t = 0  # Adam steps taken by each network
        self.classes = params["G_W1"].shape[0] - Z_DIM  # C one-hot label columns after z and x (0: unconditional)

    @staticmethod
    def _apply(opt, tensors, loss):
        for t, g in zip(tensors, torch.autograd.grad(loss, tensors)):
            t.grad = g
        opt.step()

    def _schedule(self):
        """Each net's learning rate for step t (the same float64 numbers as the Triton trainer's)."""
        if self.hyper.lr_decay == "none":
            return
        step = torch.tensor([self.t + 1])
        for net, opt, _ in self._nets():
            opt.param_groups[0]["lr"] = self.hyper.lrs(net, step).item()

    def _labelled(self, fake, z):
        """D's input for G's samples: with the one-hot label columns G drew them for (z's last C)."""
        return torch.cat([fake, z[:, Z_DIM:]], dim=1) if self.classes else fake

    def __call__(self, x, z_d, z_g):
        """Returns a device tensor [d_loss, d_real_loss, d_fake_loss, g_loss] (no host sync);
        the losses are the BCE terms only (the R1 penalty is not in d_loss). A conditional model
        (C classes) takes x (B, X + C) and z (B, Z + C), each with its one-hot label columns last."""
        bce = self.ops.sigmoid_bce_with_logits
        r1 = self.hyper.r1 * self.hyper.r1_every if self.hyper.r1_on(self.t + 1) else 0.0  # this step's (lazy R1)
        self._schedule()
        with torch.no_grad():
            fake = self._labelled(self.G(z_d), z_d)
        if r1:
            x = x.detach().requires_grad_(True)
        real_logit = self.D(x)
        d_real = bce(real_logit, 1.0)
        d_fake = bce(self.D(fake), 0.0)
        d_loss = d_real + d_fake  # a sum of two means, as in the seed
        objective = d_loss
        if r1:  # (gamma / 2) mean |grad_x D(x)|^2 on the real rows, differentiated again (double backward)
            (grad_x,) = torch.autograd.grad(real_logit.sum(), x, create_graph=True)
            if self.classes:  # the penalty is on the images' pixels, not their label columns
                grad_x = grad_x[:, : -self.classes]
            objective = d_loss + (r1 / 2) * grad_x.square().sum(1).mean()
        self._apply(self.opt_d, self.d_params, objective)
        loss_g = bce(self.D(self._labelled(self.G(z_g), z_g)), 1.0)  # non-saturating: mean BCE(D(G(z)), 1)
        self._apply(self.opt_g, self.g_params, loss_g)
        if self.ema is not None:  # ema + w (p - ema), each op rounded once, as the Triton trainer
            weight = self.hyper.ema_weights(torch.tensor([self.t + 1])).item()  # a host tensor: no device sync
            with torch.no_grad():
                for k, e in self.ema.items():
                    e.add_((self.params[k] - e).mul_(weight))
        self.t += 1
        return torch.stack([d_loss, d_real, d_fake, loss_g]).detach()

    def _nets(self):
        return (("G", self.opt_g, G_SHAPES), ("D", self.opt_d, D_SHAPES))

    def sample_params(self):
        """G's weights that grids and measurements draw with: the EMA's when it is on."""
        return self.ema if self.ema is not None else self.params

    def state_dict(self):
        """Device copies of everything the step updates, in the checkpoint format."""
        adam = {}
        for net, opt, names in self._nets():
            states = [opt.state.get(self.params[k], {}) for k in names]
            adam[net] = (self.t, {m: {k: s[m] for k, s in zip(names, states) if s} for m in MOMENTS})
        return run_state(self.params, adam, self.ema)

    def load_state_dict(self, state):
        """Continue from a state_dict (or a checkpoint): parameters, Adam moments and step, EMA."""
        with torch.no_grad():
            for k in SHAPES:
                self.params[k].copy_(state["params"][k])
            if self.ema is not None:
                for k, e in self.ema.items():
                    e.copy_(g_weights(state)[k])
        steps = set()
        for net, opt, names in self._nets():
            step, moments = read_adam(state, net)
            steps.add(step)
            opt.state.clear()
            for k in names if step else ():
                t = self.params[k]
                opt.state[t] = {"step": torch.tensor(float(step)),
                                **{m: moments[m][k].to(t.device).clone() for m in MOMENTS}}
        if len(steps) != 1:
            raise ValueError(f"G and D took different numbers of Adam steps ({sorted(steps)}); a run steps both")
        self.t = steps.pop()


# One run's state in the checkpoint format (fastgan.checkpoint writes and validates it): what every
# trainer's state_dict gives and load_state_dict takes.
MOMENTS = ("exp_avg", "exp_avg_sq")


def run_state(params, adam, ema=None):
    """One run's {"params", "adam"[, "ema"]} in the checkpoint format, as copies on the run's
    device: `params` name -> tensor; `adam` net -> (its Adam step count, {"exp_avg": name ->
    tensor, "exp_avg_sq": ...}, empty before its first step); `ema`: G's EMA weights, name ->
    tensor, or None (--g-ema 0: no entry). Every trainer's state_dict is this."""
    state = {"params": {k: v.detach().clone() for k, v in params.items()},
             "adam": {net: {"step": torch.tensor(float(step)),
                            **{m: {k: t.detach().clone() for k, t in moments[m].items()} for m in MOMENTS}}
                      for net, (step, moments) in adam.items()}}
    if ema is not None:
        state["ema"] = {k: v.detach().clone() for k, v in ema.items()}
    return state


def g_weights(state, raw=False):
    """G's weights a grid, a measurement or fastgan.load draws with: the EMA's if the state has
    them (unless `raw`), else the trained ones; name -> tensor."""
    return state["ema"] if "ema" in state and not raw else {k: state["params"][k] for k in G_SHAPES}


def read_adam(state, net):
    """(step count, {"exp_avg": name -> tensor, "exp_avg_sq": ...}) of one net's Adam state in
    a run_state or checkpoint; the moments are empty at step 0."""
    s = state["adam"][net]
    step = int(float(s["step"]))
    return step, {m: (s[m] if step else {}) for m in MOMENTS}
