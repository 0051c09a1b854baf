"""One run's optimisation settings beyond the seed's, and the named recipes.

    seed    the seed's numbers: Adam 1e-3 for both networks, beta1 0.9, no penalty, no EMA
    stable  the seed's model and schedule at batch 256 with a lazy R1 penalty (gamma 0.3 on every
            4th D step), an EMA of G whose horizon grows with the run (sigma_rel 0.1), Adam with
            beta1 0.5 at 3e-3 for D and 2e-3 for G, and both learning rates falling linearly from
            iteration 500,000 to 0.2 of themselves at the run's end (a run of 500,000 or fewer
            keeps its rates throughout). docs/recipes.md: the searches that chose it, and what
            did not work. Its earlier forms stay reachable by their flags: the fifth (2026-12-07,
            batch 128) `--recipe stable --batch-size 128`; the fourth (its decay to 0)
            `--recipe stable --batch-size 128 --decay-floor 0`; the third `--recipe stable
            --batch-size 128 --lr 2e-3 --decay-floor 0`; the second `--recipe stable --batch-size
            128 --lr 1e-3 --lr-decay none --g-ema-rel 0.05`; the first `--recipe stable
            --batch-size 128 --lr 1e-3 --lr-decay none --r1 1 --r1-every 1 --g-ema 0.999`

Settings (each a train.py flag and a --sweep key):
  lr_d, lr_g     Adam's learning rate of D and of G (default: --lr)
  r1             gamma of the R1 penalty (Mescheder et al. 2018): D's loss gains
                 (gamma / 2) * mean over the real images of |grad_x D(x)|^2; 0: off
  r1_every       lazy R1 (StyleGAN2's lazy regularization): the penalty on every k-th D step
                 only (steps 1, 1 + k, ...), with gamma * k; 1: every step
  g_ema          beta of an exponential moving average of G's weights, updated after each G
                 step (ema <- ema + (1 - beta) (w - ema)); grids, measurements, best.pt and the
                 generator use it; 0: off
  g_ema_rel      instead of a fixed beta, an EMA whose horizon grows with the run: EDM2's
                 power-function EMA (Karras et al. 2024), beta at step t = (1 - 1/t)^(g + 1),
                 its averaging profile's width sigma_rel = g_ema_rel of the steps so far
                 (0.05: the last ~5% of the run); 0: off
  lr_decay       none, linear or cosine: both learning rates fall from decay_start to 0 at the
                 run's target iteration (or to decay_floor of themselves)
  decay_start    the iteration the decay starts at
  decay_floor    the fraction of each learning rate the decay ends at (0: it falls to 0)

A recipe also names the batch size (the whole trainer's, so not a --sweep key): the seed's 128,
the stable recipe's 256.

Both trainers take a step's learning rate from `lr_factor` in float64 (the eager one as
torch.optim.Adam's lr, the Triton one in the per-step Adam rows), so they follow one schedule.
"""

import functools
import math
from dataclasses import dataclass

import torch

DECAYS = ("none", "linear", "cosine")
DEFAULT_ITERS = 1_000_000  # the seed's schedule

# The seed's optimisation numbers, written once (Adam's betas and eps for fastgan.model's step too): fastgan.config.Config's defaults, Hyper's and the
# seed recipe's are these.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
SEED = {"lr": 1e-3, "beta1": ADAM_BETAS[0], "r1": 0.0, "r1_every": 1, "g_ema": 0.0, "g_ema_rel": 0.0, "lr_decay": "none",
        "decay_start": 0, "decay_floor": 0.0}
MAX_EMA_REL = 0.28  # sigma_rel of a power-function EMA: below 1 / sqrt(12) = 0.2887, where its exponent g reaches 0
EMA_KINDS = ("g_ema", "g_ema_rel")  # a fixed EMA and a growing one: a run keeps at most one

SEED_BATCH = 128  # the seed's batch: fastgan.config.Config's default
# The settings a recipe may name (explicit flags override a recipe's; a given lr, both nets' rates): each run's
# (Hyper's, --sweep keys) and the trainer's (TRAINER_SETTINGS).
SETTINGS = ("lr", "lr_d", "lr_g", "beta1", "r1", "r1_every", "g_ema", "g_ema_rel", "lr_decay", "decay_start", "decay_floor")
TRAINER_SETTINGS = ("batch_size",)
# Every recipe names these (`resolved` for a run's target).
RECIPES = {"seed": {**{k: SEED[k] for k in SETTINGS if k in SEED}, "batch_size": SEED_BATCH}}  # lr_d and lr_g: --lr's unless given
RECIPES["stable"] = {**RECIPES["seed"], "lr": 2e-3, "lr_d": 3e-3, "beta1": 0.5, "r1": 0.3, "r1_every": 4, "g_ema_rel": 0.1,
                     "lr_decay": "linear", "decay_start": 500_000, "decay_floor": 0.2, "batch_size": 256}


def resolved(settings, target, given=()):
    """A recipe's settings (the flags in `given` put in) for a run to iteration `target`: the
    recipe's decay off where it would not start before the target (a short run keeps the
    recipe's rate throughout); a decay given as a flag is kept as it is."""
    if "lr_decay" not in given and settings["lr_decay"] != "none" and settings["decay_start"] >= target:
        return {**settings, "lr_decay": "none", "decay_start": SEED["decay_start"], "decay_floor": SEED["decay_floor"]}
    return dict(settings)


@dataclass(frozen=True)
class Hyper:
    """One run's optimiser settings; the defaults are the seed's."""

    lr_d: float = SEED["lr"]
    lr_g: float = SEED["lr"]
    beta1: float = SEED["beta1"]
    r1: float = SEED["r1"]
    g_ema: float = SEED["g_ema"]
    lr_decay: str = SEED["lr_decay"]
    decay_start: int = SEED["decay_start"]
    target: int = DEFAULT_ITERS  # the iteration a decay reaches 0 at: the run's --iters
    r1_every: int = SEED["r1_every"]
    g_ema_rel: float = SEED["g_ema_rel"]
    decay_floor: float = SEED["decay_floor"]

    @classmethod
    def of(cls, cfg):
        """A resolved Config's (fastgan.config) settings."""
        return cls(cfg.lr_d_or_lr(), cfg.lr_g_or_lr(), cfg.beta1, cfg.r1, cfg.g_ema, cfg.lr_decay, cfg.decay_start,
                   cfg.target_iters(), cfg.r1_every, cfg.g_ema_rel, cfg.decay_floor)

    @classmethod
    def recipe(cls, name, target=DEFAULT_ITERS):
        """A named recipe's settings (RECIPES, less the trainer's batch size) for a run to iteration `target`."""
        settings = {k: v for k, v in resolved(RECIPES[name], target).items() if k not in TRAINER_SETTINGS}
        lr = settings.pop("lr")
        return cls(lr_d=settings.pop("lr_d", lr), lr_g=settings.pop("lr_g", lr), target=target, **settings)

    @property
    def keeps_ema(self):
        """Whether the run keeps an EMA of G's weights (a fixed beta or a growing horizon)."""
        return bool(self.g_ema or self.g_ema_rel)

    def ema_weights(self, steps):
        """The EMA's weight 1 - beta after G steps `steps` (a tensor of t >= 1), float32 as both
        trainers apply it: 1 - g_ema, or with g_ema_rel 1 - (1 - 1/t)^(g + 1) (`ema_exponent`),
        which is 1 at t = 1 (the EMA starts at the weights) and about (g + 1) / t later."""
        t = steps.to(torch.float64)
        if self.g_ema_rel:
            weights = -torch.expm1((ema_exponent(self.g_ema_rel) + 1.0) * torch.log1p(-1.0 / t))
        else:
            weights = torch.full_like(t, 1.0 - self.g_ema if self.g_ema else 0.0)
        return weights.to(torch.float32)

    def r1_on(self, steps):
        """Whether D steps `steps` (t >= 1: an int or a tensor) get the R1 penalty: steps 1, 1 + k,
        ... (lazy R1 with k = r1_every); every step when k = 1. It weighs gamma * k there."""
        return (steps - 1) % self.r1_every == 0

    def r1_gammas(self, steps):
        """The R1 gamma of D steps `steps` (a tensor), float32, as the Triton trainer reads it:
        gamma * k where `r1_on`, else 0; gamma itself on every step when k = 1."""
        return torch.where(self.r1_on(steps), self.r1 * self.r1_every, 0.0).to(torch.float32)

    def lr(self, net):
        return self.lr_d if net == "D" else self.lr_g

    def lrs(self, net, steps):
        """Net's learning rate at Adam step numbers `steps` (a tensor of t >= 1), float64."""
        t = steps.to(torch.float64)
        return self.lr(net) * lr_factor(t, self.lr_decay, self.decay_start, self.target, self.decay_floor)


def other_ema_off(values, given):
    """{setting: 0.0} for the EMA kind (EMA_KINDS) that a given one replaces: where one kind is
    given (in `given`, non-zero in `values`) and the other is not, the other (a recipe's) is off."""
    return {other: 0.0 for ema, other in (EMA_KINDS, EMA_KINDS[::-1])
            if ema in given and values[ema] and other not in given}


def net_rates_off(given):
    """{lr_d: None, ...}: a given lr is both networks' rate, so a recipe's rate of one network
    (lr_d, lr_g) gives way to it, unless that network's rate is given too."""
    return {net: None for net in ("lr_d", "lr_g") if "lr" in given and net not in given}


@functools.lru_cache(maxsize=None)
def ema_exponent(sigma_rel):
    """The exponent g of EDM2's power-function EMA whose averaging profile has relative width
    sigma_rel (0 < sigma_rel < 1 / sqrt(12)): the largest real root of
    g^3 + 7 g^2 + (16 - s) g + (12 - s) = 0 with s = sigma_rel^-2 (Karras et al. 2024, eq. 3),
    found by bisection on (0, s) where the cubic changes sign once."""
    s = sigma_rel**-2
    lo, hi = 0.0, s
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if ((mid + 7.0) * mid + 16.0 - s) * mid + 12.0 - s < 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def lr_factor(steps, decay, start, target, floor=0.0):
    """The learning rate's factor at Adam steps t (a float64 tensor): 1 up to iteration `start`,
    then falling to `floor` at `target` (floor + (1 - floor) times the decay's shape). Step t is
    iteration t, which follows t - 1 iterations done: the factor is that of progress
    p = (t - 1 - start) / (target - start), clamped to [0, 1], so the last step of a run still
    moves (p < 1)."""
    if decay == "none":
        return torch.ones_like(steps)
    p = ((steps - 1 - start) / max(target - start, 1)).clamp(0.0, 1.0)
    shape = 1.0 - p if decay == "linear" else 0.5 * (1.0 + torch.cos(math.pi * p))
    return floor + (1.0 - floor) * shape  # floor 0: the shape itself, bitwise
