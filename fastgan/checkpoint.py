"""Checkpoints: written atomically (temp file, fsync, rename), read with `weights_only=True`,
validated against the architecture before anything is trusted."""

import errno
import re
import shutil
from pathlib import Path

import torch

from .atomic import replacing
from .errors import FastganError
from .model import (  # noqa: F401  (MOMENTS, run_state, read_adam, g_weights: the format's parts)
    ARCH,
    D_SHAPES,
    G_SHAPES,
    MAX_HIDDEN,
    MOMENTS,
    Z_DIM,
    arch,
    g_shapes,
    g_weights,
    image_of,
    read_adam,
    run_state,
    shapes,
)

FORMAT = "fastgan-checkpoint-1"
_NAME = re.compile(r"^(\d{7,})\.pt$")
NETS = {"G": G_SHAPES, "D": D_SHAPES}  # each net's parameter names (shapes: MNIST's; fastgan.model.nets(x))


def ckpt_name(iteration):
    return f"{iteration:07d}.pt"


def atomic_torch_save(path, obj, before_replace=None):
    """torch.save so that a crash at any moment leaves either the old or the new file, and a
    failed write (disk full, no permission) leaves no temp file: FastganError names the path.
    `before_replace` runs after the new file is durable and before it takes the old one's place."""
    path = Path(path)
    with replacing(path, "write checkpoint", before_replace) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError:  # torch.save reports a failed write so: measured while the partial file still fills the disk
            free = shutil.disk_usage(path.parent).free
            raise OSError(errno.ENOSPC, "No space left on device") if free < (1 << 20) else \
                OSError(errno.EIO, f"write failed ({free >> 20} MB free there)") from None


def save(path, state, before_replace=None):
    atomic_torch_save(path, {"format": FORMAT, "arch": dict(ARCH), **state}, before_replace)


def load(path):
    """Read and validate a checkpoint; FastganError says why one is unusable."""
    path = Path(path)
    if not path.is_file():
        raise FastganError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle refused by weights_only, not a torch file at all
        raise FastganError(f"{path} is unreadable as a checkpoint ({type(e).__name__}): not a fastgan checkpoint, or "
                           "a truncated one (then an earlier checkpoint of the same run will do)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FastganError(f"{path} is not a fastgan checkpoint (format {FORMAT!r} expected)")
    a = state.get("arch")
    if not _known_arch(a):
        raise FastganError(f"checkpoint {path} is for architecture {a}, this fastgan trains {ARCH} (x_dim: any "
                           f"C x S x S image, with its image shape; h_dim: 1..{MAX_HIDDEN})")
    x_dim, h_dim, c = a["x_dim"], a["h_dim"], len(class_names(state))
    tables = [("parameter", state.get("params", {}), shapes(x_dim, h_dim, c))]
    if "ema" in state:  # G's EMA weights (--g-ema)
        tables.append(("EMA weight", state["ema"] if isinstance(state["ema"], dict) else {}, g_shapes(x_dim, h_dim, c)))
    for what, tensors, want in tables:
        for name, shape in want.items():
            t = tensors.get(name)
            if not torch.is_tensor(t) or tuple(t.shape) != shape:
                got = tuple(t.shape) if torch.is_tensor(t) else None
                raise FastganError(f"checkpoint {path}: {what} {name} has shape {got}, expected {shape}")
            if not torch.isfinite(t).all():
                raise FastganError(f"checkpoint {path}: {what} {name} has NaN or infinite values; "
                                   "use an earlier checkpoint of the run")
    return state


def _known_arch(a):
    """The seed's MLP for MNIST (ARCH) or for other C x S x S images, of any hidden width, with or
    without classes (fastgan.model.arch)."""
    if not isinstance(a, dict) or a.get("z_dim") != Z_DIM:
        return False
    h, names = a.get("h_dim"), a.get("classes")
    if not isinstance(h, int) or isinstance(h, bool) or not 1 <= h <= MAX_HIDDEN:
        return False
    if names is not None and not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)):
        return False
    image = a.get("image")
    if image is None:
        return a == arch(h_dim=h, class_names=names)
    return (set(a) - {"classes"} == {"z_dim", "h_dim", "x_dim", "image"} and isinstance(image, list) and len(image) == 3
            and all(isinstance(v, int) and v > 0 for v in image) and a == arch(tuple(image), h, names))


def image_shape(state):
    """(C, S, S) of the images a loaded checkpoint's G draws."""
    return image_of(state["arch"])


def hidden(state):
    """The hidden width of a loaded checkpoint's networks."""
    return state["arch"]["h_dim"]


def class_names(state):
    """The class names of a loaded checkpoint's conditional model; [] for an unconditional one."""
    return state["arch"].get("classes", [])


def check_resumable(path, state):
    """A checkpoint that can continue training holds the iteration, both Adam states and the
    sampler as well as the parameters; FastganError names what is missing."""
    def missing(what):
        return FastganError(f"checkpoint {path} lacks {what}; it cannot continue a run: resume from another checkpoint")

    if not isinstance(state.get("iter"), int) or state["iter"] < 0:
        raise missing("its iteration number")
    adam = state.get("adam")
    want = shapes(state["arch"]["x_dim"], hidden(state), len(class_names(state)))
    for net, names in NETS.items():
        s = adam.get(net) if isinstance(adam, dict) else None
        if not isinstance(s, dict) or "step" not in s:
            raise missing(f"{net}'s Adam state ('adam' entry)")
        if float(s["step"]) > 0:
            for moment in MOMENTS:
                got = s.get(moment, {})
                for name in names:
                    t = got.get(name) if isinstance(got, dict) else None
                    if not torch.is_tensor(t) or tuple(t.shape) != want[name]:
                        raise missing(f"a usable Adam {moment} for {name}")
    sampler = state.get("sampler")
    if not isinstance(sampler, dict) or not {"data_gen", "noise_gen", "perm", "pos"} <= set(sampler):
        raise missing("the data sampler's state ('sampler' entry)")


def list_checkpoints(folder):
    """Numbered checkpoints in `folder`, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def prune(folder, keep):
    for p in list_checkpoints(folder)[:-keep]:
        p.unlink()


def resolve_best(arg, what):
    """For using a generator: a checkpoint file, or a run folder's best.pt, else its newest."""
    best = Path(arg) / "checkpoints" / "best.pt"
    return best if best.is_file() else resolve(arg, what)


def resolve(arg, what="--resume"):
    """A checkpoint file, or a run folder (its newest checkpoint); `what` names the argument."""
    path = Path(arg)
    if path.is_dir():
        found = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
        if not found:
            raise FastganError(f"no checkpoints in {path} (looked in {path / 'checkpoints'})")
        return found[-1]
    if not path.exists():
        raise FastganError(f"{what} {path}: no such file or folder")
    return path
