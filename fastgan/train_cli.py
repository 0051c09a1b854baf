"""`fastgan train` (also `python -m fastgan train` and, from a clone, `python train.py`): its flags,
the exit codes, and a Ctrl-C or SIGTERM during start-up.

Exit codes: 0 done (or stopped by Ctrl-C with a checkpoint), 2 a problem with the input (one
line), 130 interrupted at once, 143 SIGTERM (checkpointed in the loop; at once outside it)."""

import argparse
import signal
import sys
import threading

from .cli import Help, command, reproducible_products, set_prog
from .errors import FastganError  # light: errors, interrupt and cli import neither torch nor numpy
from .interrupt import SIGNALS, Interrupted, SigTerm, Terminated, raise_sigterm

DESCRIPTION = "Train the seed's vanilla GAN (Goodfellow et al. 2014) on MNIST or your own images."


def _parser():
    from .config import BACKENDS, DEFAULT_ITERS, DEVICES, PRECISIONS, Config
    from .data import DATASETS
    from .recipes import DECAYS, RECIPES
    from .sweep import KEYS as SWEEP_KEYS

    d = Config()
    p = argparse.ArgumentParser(prog=command("train"), description=DESCRIPTION, formatter_class=Help)
    p.add_argument("--iters", type=int, default=d.iters,
                   help=f"target iteration (one D step + one G step each); default {DEFAULT_ITERS:,}, "
                        "or with --resume the run's own target")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="B: B real and B generated images per D step, B generated per G step "
                        f"(--recipe stable: {RECIPES['stable']['batch_size']})")
    p.add_argument("--hidden", type=int, default=d.hidden, metavar="H",
                   help="G's and D's hidden width (the seed's: 128; e.g. 512 for a wider model)")
    p.add_argument("--conditional", action="store_true",
                   help="class-conditional: G and D also take each image's class (one-hot, as the seed author's "
                        "conditional GAN); grids show one row per class; needs labelled images")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate of both networks")
    p.add_argument("--beta1", type=float, default=d.beta1, help="Adam beta1 of both networks")
    p.add_argument("--recipe", choices=tuple(RECIPES), default=d.recipe,
                   help="seed: the seed's numbers; stable: "
                        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in RECIPES["stable"].items()
                                   if v != RECIPES["seed"].get(k))
                        + " (the decay only in runs longer than that; docs/recipes.md); a flag given overrides the "
                        "recipe's value (--lr: both networks' rates)")
    p.add_argument("--lr-d", type=float, default=d.lr_d, help="D's Adam learning rate (default: --lr)")
    p.add_argument("--lr-g", type=float, default=d.lr_g, help="G's Adam learning rate (default: --lr)")
    p.add_argument("--r1", type=float, default=d.r1, metavar="GAMMA",
                   help="R1 penalty: D's loss gains GAMMA/2 * mean |grad_x D(x)|^2 on real images; 0: off")
    p.add_argument("--r1-every", type=int, default=d.r1_every, metavar="K",
                   help="lazy R1: the penalty on every K-th D step only, with GAMMA * K (StyleGAN2's); 1: every step")
    p.add_argument("--g-ema", type=float, default=d.g_ema, metavar="BETA",
                   help="keep an EMA of G's weights (e.g. 0.999); grids, metrics, best.pt and samples use it; 0: off")
    p.add_argument("--g-ema-rel", type=float, default=d.g_ema_rel, metavar="SIGMA",
                   help="instead of --g-ema, an EMA whose horizon grows with the run (EDM2's power-function EMA): "
                        "it averages about the last SIGMA of the iterations so far (e.g. 0.05); 0: off")
    p.add_argument("--lr-decay", choices=DECAYS, default=d.lr_decay,
                   help="learning-rate decay to 0 (or --decay-floor) at the target iteration, from --decay-start")
    p.add_argument("--decay-start", type=int, default=d.decay_start, metavar="ITER",
                   help="the iteration the learning-rate decay starts at")
    p.add_argument("--decay-floor", type=float, default=d.decay_floor, metavar="FRACTION",
                   help="the fraction of each learning rate the decay ends at (0: it falls to 0)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the weights, the noise and the batches")
    p.add_argument("--out", default=d.out, help="run folder (default: runs/<date-time>)")
    p.add_argument("--sample-every", type=int, default=d.sample_every, help="iterations between 4x4 sample grids")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="iterations between checkpoints")
    p.add_argument("--keep", type=int, default=d.keep, help="numbered checkpoints kept")
    p.add_argument("--log-every", type=int, default=d.log_every, help="iterations between logged losses")
    p.add_argument("--device", choices=DEVICES, default=d.device, help="auto: the GPU if there is one, else the CPU")
    p.add_argument("--backend", choices=BACKENDS, default=d.backend,
                   help="auto: graph on CUDA, fused on a CPU (there the Triton trainer's launches run as their CPU "
                        "twins); eager: the plain-PyTorch autograd reference")
    p.add_argument("--threads", type=int, default=d.threads, metavar="N",
                   help="CPU threads for torch's ops (default: one per core); e.g. 1 each for two trainings on 2 cores")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="matrix products of the Triton backends: ieee (fp32), tf32x3 (tensor cores, "
                        "close to fp32), tf32 (tensor cores, ~1e-3 relative)")
    p.add_argument("--resume", default=d.resume, help="a checkpoint file, or a run folder (its newest checkpoint)")
    p.add_argument("--dataset", default=d.dataset,
                   help=f"{', '.join(DATASETS)}, or your own images: a folder (searched recursively) or an .npz")
    p.add_argument("--image-size", type=int, default=d.image_size, metavar="S",
                   help="your own images' square side (default: theirs if square, else 28); centre-cropped and resized")
    p.add_argument("--channels", type=int, choices=(1, 3), default=d.channels,
                   help="your own images as grey (1) or RGB (3) (default: theirs)")
    p.add_argument("--data-dir", default=d.data_dir, help="data folder (default: $FASTGAN_DATA or ~/.cache/fastgan)")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="iterations between sample-quality metrics (Fréchet distance etc.) and best.pt")
    p.add_argument("--seeds", default=d.seeds, metavar="RANGE",
                   help="train several runs at once that differ in seed, e.g. 0-7 (one folder each in --out)")
    p.add_argument("--sweep", default=d.sweep, metavar="SPEC",
                   help='train the cartesian product at once, e.g. "lr=1e-3,2e-4 beta1=0.9,0.5 seed=0-3"; keys: '
                        + ", ".join(SWEEP_KEYS))
    p.add_argument("--iters-per-replay", type=int, default=d.iters_per_replay,
                   help="iterations per CUDA-graph replay (graph backend); also how often the others check for Ctrl-C")
    return p


def parse_args(argv=None):
    """The Config the flags give, knowing which flags were given (a resumed run keeps the rest)."""
    from .config import Config

    args = vars(_parser().parse_args(argv))
    unset = object()
    probe = _parser()
    probe.set_defaults(**{k: unset for k in args})
    given = frozenset(k for k, v in vars(probe.parse_args(argv)).items() if v is not unset)
    return Config(**args, given=given)


def _load(argv):
    """The training entry and the config. A Ctrl-C or SIGTERM while torch, numpy and matplotlib
    load is noted and acted on after: interrupted mid-import they can fail with other errors."""
    noted = []
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.getsignal(s) for s in SIGNALS} if main_thread else {}
    deferred = {s: h for s, h in previous.items() if h is not signal.SIG_IGN}
    for s in deferred:
        signal.signal(s, lambda signum, frame: noted.append(signum))
    try:
        from .run import train

        cfg = parse_args(argv)
    finally:
        for s, h in deferred.items():
            signal.signal(s, h)
    if noted:
        raise SigTerm if signal.SIGTERM in noted else KeyboardInterrupt
    return train, cfg


def _train(train, cfg):
    """train(cfg) with SIGTERM stopping start-up and shut-down as Ctrl-C does (the training loop
    has its own handlers: a stop checkpoint first)."""
    handling = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    previous = signal.signal(signal.SIGTERM, raise_sigterm) if handling else None
    try:
        train(cfg)
    finally:
        if handling:
            signal.signal(signal.SIGTERM, previous)


def main(argv=None, prog=None):
    """`fastgan train ARGV`; `prog` names the command the user ran (for the help and the messages)."""
    if prog is not None:
        set_prog(prog)
    reproducible_products()
    try:
        train, cfg = _load(argv)
        _train(train, cfg)
    except Interrupted as e:
        print(f"error: {e}", file=sys.stderr)
        return 130
    except Terminated as e:
        print(str(e), file=sys.stderr)
        return 143
    except FastganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SigTerm:  # before the run started (imports, arguments)
        print("error: terminated (SIGTERM); nothing was trained", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("error: interrupted (Ctrl-C); nothing was trained", file=sys.stderr)
        return 130
    return 0
