"""The seed's defaults, as one read-only dataclass; `train.py` fills it from flags, and a run
resolves it once (fastgan.resume, fastgan.sweep_driver) into a new one before validating it."""

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Optional

from .data import DATASETS
from .errors import FastganError
from .model import H_DIM, MAX_HIDDEN
from .recipes import (
    ADAM_BETAS,
    DECAYS,
    DEFAULT_ITERS,
    EMA_KINDS,
    MAX_EMA_REL,
    RECIPES,
    SEED,
    SEED_BATCH,
    net_rates_off,
    other_ema_off,
    resolved,
)

DEVICES = ("auto", "cuda", "cpu")
BACKENDS = ("auto", "eager", "fused", "graph")
PRECISIONS = ("ieee", "tf32x3", "tf32")  # the Triton backends' matrix-product input precision

MAX_SEED = 2**63 - 1  # torch generators take 64-bit seeds


@dataclass(frozen=True)
class Config:
    iters: Optional[int] = None  # None: DEFAULT_ITERS, or a resumed run's own target
    batch_size: int = SEED_BATCH  # fastgan.recipes: the stable recipe's is 256
    hidden: int = H_DIM  # G's and D's hidden width (the seed's 128)
    conditional: bool = False  # G(z, y) and D(x, y) with each image's class (fastgan.classes)
    lr: float = SEED["lr"]
    beta1: float = SEED["beta1"]
    seed: int = 0
    out: Optional[str] = None
    sample_every: int = 1000
    ckpt_every: int = 1000
    keep: int = 50
    log_every: int = 100
    device: str = "auto"
    backend: str = "auto"
    precision: str = "ieee"
    resume: Optional[str] = None
    dataset: str = "mnist"  # or the path of a folder of images or an .npz (fastgan.images)
    image_size: Optional[int] = None  # your own images' square side (None: the data's own)
    channels: Optional[int] = None  # 1 or 3 (None: the data's own)
    data_dir: Optional[str] = None
    iters_per_replay: int = 100
    threads: Optional[int] = None  # torch's CPU threads (None: its default, one per core); not kept by a resume
    eval_every: int = 50_000
    # fastgan.recipes: a named recipe, and its settings (a flag given overrides the recipe's)
    recipe: str = "seed"
    lr_d: Optional[float] = None  # None: lr
    lr_g: Optional[float] = None  # None: lr
    r1: float = SEED["r1"]
    r1_every: int = SEED["r1_every"]
    g_ema: float = SEED["g_ema"]
    g_ema_rel: float = SEED["g_ema_rel"]
    lr_decay: str = SEED["lr_decay"]
    decay_start: int = SEED["decay_start"]
    decay_floor: float = SEED["decay_floor"]
    seeds: Optional[str] = None  # a sweep over seeds: "0-7"
    sweep: Optional[str] = None  # a sweep: "lr=1e-3,2e-4 beta1=0.9,0.5 seed=0-3"
    # The settings the user gave (train.py's flags); None: those that differ from the defaults.
    # A resumed run keeps its own value of every setting not given (fastgan.resume).
    given: Optional[frozenset] = field(default=None, compare=False, repr=False)

    def target_iters(self):
        """The target iteration: --iters, else DEFAULT_ITERS (a resumed run's own comes first)."""
        return DEFAULT_ITERS if self.iters is None else self.iters

    def lr_d_or_lr(self):
        return self.lr if self.lr_d is None else self.lr_d

    def lr_g_or_lr(self):
        return self.lr if self.lr_g is None else self.lr_g

    def with_recipe(self):
        """The config with its recipe's settings where no flag gave them (a new run or sweep)."""
        if self.recipe not in RECIPES:
            raise FastganError(f"unknown --recipe {self.recipe!r}; choose one of: {', '.join(RECIPES)}")
        given = self.given_names()
        recipe = {k: getattr(self, k) if k in given else v for k, v in RECIPES[self.recipe].items()}
        settings = {k: v for k, v in resolved(recipe, self.target_iters(), given).items() if k not in given}
        settings.update(other_ema_off({k: getattr(self, k) for k in EMA_KINDS}, given))  # an EMA given replaces the recipe's
        settings.update(net_rates_off(given))  # so does an lr given, the recipe's rate of one net
        return replace(self, **settings)

    def given_names(self):
        if self.given is not None:
            return self.given
        default = Config()
        return frozenset(f.name for f in fields(self) if f.name != "given" and getattr(self, f.name) != getattr(default, f.name))

    def validate(self):
        for name in ("iters", "batch_size", "sample_every", "ckpt_every", "keep", "log_every", "iters_per_replay", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise FastganError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not isinstance(self.hidden, int) or not 1 <= self.hidden <= MAX_HIDDEN:
            raise FastganError(f"--hidden must be a width of 1..{MAX_HIDDEN} units (the seed's: {H_DIM}), got {self.hidden!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise FastganError(f"--seed must be an integer in 0..{MAX_SEED} (2**63 - 1), got {self.seed!r}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise FastganError(f"--lr must be in (0, 1], got {self.lr!r}")
        if not 0 <= self.beta1 < 1:
            raise FastganError(f"--beta1 must be in [0, 1), got {self.beta1!r}")
        for name in ("lr_d", "lr_g"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0 < value <= 1):
                raise FastganError(f"--{name.replace('_', '-')} must be in (0, 1], got {value!r}")
        if not (math.isfinite(self.r1) and self.r1 >= 0):
            raise FastganError(f"--r1 must be a finite gamma >= 0 (0: off), got {self.r1!r}")
        if not isinstance(self.r1_every, int) or self.r1_every < 1:
            raise FastganError(f"--r1-every must be a whole number of D steps >= 1 (1: every step), got {self.r1_every!r}")
        if not 0 <= self.g_ema < 1:
            raise FastganError(f"--g-ema must be in [0, 1) (0: off; e.g. 0.999), got {self.g_ema!r}")
        if not (math.isfinite(self.g_ema_rel) and 0 <= self.g_ema_rel <= MAX_EMA_REL):
            raise FastganError(f"--g-ema-rel must be in [0, {MAX_EMA_REL}] (0: off; e.g. 0.05), got {self.g_ema_rel!r}")
        if self.g_ema and self.g_ema_rel:
            raise FastganError(f"--g-ema {self.g_ema} and --g-ema-rel {self.g_ema_rel} are two EMAs of G; keep one "
                               "(--g-ema 0 or --g-ema-rel 0 turns the other off)")
        if not isinstance(self.decay_start, int) or self.decay_start < 0:
            raise FastganError(f"--decay-start must be an iteration >= 0, got {self.decay_start!r}")
        if not (math.isfinite(self.decay_floor) and 0 <= self.decay_floor <= 1):
            raise FastganError(f"--decay-floor must be a fraction in [0, 1] of each learning rate (0: to 0), got {self.decay_floor!r}")
        if self.lr_decay != "none" and self.iters is not None and self.decay_start >= self.iters:
            raise FastganError(f"--decay-start {self.decay_start} is not before the target iteration {self.iters}; "
                               "the decay would never start: lower it, or use --lr-decay none")
        if self.dataset not in DATASETS and not Path(self.dataset).exists():
            raise FastganError(f"unknown --dataset {self.dataset!r}: not {' or '.join(DATASETS)}, and no such folder or "
                               "file; give a folder of images or an .npz")
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size <= 0):
            raise FastganError(f"--image-size must be a positive integer, got {self.image_size!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads <= 0):
            raise FastganError(f"--threads must be a positive integer, got {self.threads!r}")
        if self.channels not in (None, 1, 3):
            raise FastganError(f"--channels must be 1 (grey) or 3 (RGB), got {self.channels!r}")
        for name, allowed in (("device", DEVICES), ("backend", BACKENDS),
                              ("precision", PRECISIONS), ("lr_decay", DECAYS), ("recipe", RECIPES)):
            value = getattr(self, name)
            if value not in allowed:
                raise FastganError(f"unknown --{name} {value!r}; choose one of: {', '.join(allowed)}")
        for name in ("seeds", "sweep"):
            if getattr(self, name) is not None and not getattr(self, name).strip():
                raise FastganError(f"--{name} is empty; give the runs, e.g. --seeds 0-7 or --sweep \"lr=1e-3,2e-4\"")
        if self.out is not None:
            check_out(self.out)
        if self.precision != "ieee" and self.backend == "eager":
            raise FastganError(f"--precision {self.precision} is for the Triton backends (fused, graph, auto on a "
                               "GPU); the eager backend computes in IEEE fp32: drop --precision or pick another --backend")
        return self

    @property
    def betas(self):
        return (self.beta1, ADAM_BETAS[1])

    def to_dict(self):
        settings = asdict(self)
        del settings["given"]
        return settings


NAME_MAX = 255  # bytes in one file name, on Linux's file systems


def check_out(out):
    """A run folder name the file system and the writers can take, else one line saying why."""
    try:
        os.fsencode(out).decode("utf-8")
    except UnicodeError:
        raise FastganError(f"--out {out!r} is not valid UTF-8 (TensorBoard and the metrics need it); pick another "
                           "name") from None
    longest = max((len(os.fsencode(part)) for part in Path(out).parts), default=0)
    if longest > NAME_MAX:
        raise FastganError(f"--out has a name of {longest} bytes, longer than the {NAME_MAX} a file system allows; "
                           "pick a shorter one")


def default_out():
    """A new run's folder when --out is not given: runs/<date-time>."""
    return str(Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S"))
