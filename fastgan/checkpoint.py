"""Checkpoints: written atomically (temp file, fsync, rename), read with `weights_only=True`,
validated against the architecture before anything is trusted."""

import os
import re
from pathlib import Path

import torch

from .errors import FastganError
from .model import ARCH, SHAPES

FORMAT = "fastgan-checkpoint-1"
_NAME = re.compile(r"^(\d{7,})\.pt$")


def ckpt_name(iteration):
    return f"{iteration:07d}.pt"


def atomic_torch_save(path, obj):
    """torch.save so that a crash at any moment leaves either the old or the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(path, state):
    atomic_torch_save(path, {"format": FORMAT, "arch": dict(ARCH), **state})


def load(path):
    """Read and validate a checkpoint; FastganError says why one is unusable."""
    path = Path(path)
    if not path.is_file():
        raise FastganError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle refused by weights_only, not a torch file at all
        raise FastganError(
            f"checkpoint {path} is unreadable ({type(e).__name__}); it may be truncated or not a fastgan "
            "checkpoint: resume from an earlier one in the same folder"
        )
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FastganError(f"{path} is not a fastgan checkpoint (format {FORMAT!r} expected)")
    if state.get("arch") != ARCH:
        raise FastganError(f"checkpoint {path} is for architecture {state.get('arch')}, this fastgan is {ARCH}")
    params = state.get("params", {})
    for name, shape in SHAPES.items():
        t = params.get(name)
        if not torch.is_tensor(t) or tuple(t.shape) != shape:
            got = tuple(t.shape) if torch.is_tensor(t) else None
            raise FastganError(f"checkpoint {path}: parameter {name} has shape {got}, expected {shape}")
    return state


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


def resolve(resume):
    """`--resume` takes a checkpoint file or a run folder (its newest checkpoint)."""
    path = Path(resume)
    if path.is_dir():
        found = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
        if not found:
            raise FastganError(f"no checkpoints in {path} (looked in {path / 'checkpoints'})")
        return found[-1]
    if not path.exists():
        raise FastganError(f"--resume {path}: no such file or folder")
    return path
