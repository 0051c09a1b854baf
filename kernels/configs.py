"""Launch configurations as data: block sizes, split factors, warps and pipeline stages of every
kernel launch, looked up by kernel and shape in a JSON table.

Tables live in kernels/configs/: `default.json` serves every card; `<device>.json` (written by
`python -m benchmarks.tune` on that card, named by `device_file`) is read first when the
launch's tensors are on a CUDA device of that name; `interpreter.json` is read first under
Triton's interpreter (the CPU tests: large tiles, the same splits; see the file). `use(table)` puts another table first inside
a block (the tuner's candidates, tests, `kernel_report --table`).

A table is a list of entries {"kernel", optional match keys, "config"}. Match keys: "max_M" (the
entry serves M <= max_M), and "N", "K", "mode" (exact; `mode` is "dx", "dw" or "dx+dw" for the
linear backward). A missing key matches anything; the first matching entry wins, so specific
entries come first and each kernel's last default entry matches everything (tested).

Block sizes in a config are upper bounds: a launch never uses a block larger than its dimension's
next power of two (16 at least, tl.dot's minimum), so one entry serves layers of any width.

Determinism: a configuration may change how a sum is split (SPLIT_M) and so the last bits of the
numbers, but never between runs of one sweep (runs are not a match key) or between launches of
one trainer. Launches look configurations up on the host at launch time; the match is cached
per (table, kernel, shape), so a launch costs a cached lookup and the decoding of one small
JSON config (a fresh dict the launcher may change).
"""

import contextlib
import functools
import json
import re
from pathlib import Path

import triton

from . import _checks

TABLE_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_FILE = TABLE_DIR / "default.json"
INTERPRETER_FILE = TABLE_DIR / "interpreter.json"
# Each kernel's config keys (the launch's constexprs and its warps, stages); all required.
CONFIG_KEYS = {
    "linear_act_fwd": {"BLOCK_M", "BLOCK_N", "BLOCK_K", "SPLIT_K", "num_warps", "num_stages"},
    "linear_act_bwd": {"DX_BLOCK_M", "DX_BLOCK_N", "DX_BLOCK_K", "DW_BLOCK_M", "DW_BLOCK_N", "DW_BLOCK_K",
                       "SPLIT_M", "SPLIT_N", "num_warps", "num_stages"},
    "d_grad": {"BLOCK_M", "BLOCK_K", "SPLIT", "num_warps", "num_stages"},
    "d_input_grad": {"BLOCK_M", "BLOCK_K", "SPLIT", "num_warps", "num_stages"},
    "adam": {"BLOCK", "num_warps"},
}
KERNELS = tuple(CONFIG_KEYS)
MATCH_KEYS = ("max_M", "N", "K", "mode")
_override = None  # a table (list) set by use(), or None


def device_file(name):
    """kernels/configs/<slug>.json for a device name: "NVIDIA H100 80GB HBM3" -> nvidia-h100-80gb-hbm3.json."""
    return TABLE_DIR / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".json")


def load(path):
    """The entries of a table file (a list, or {"entries": [...]} as the tuner writes with its
    measurements), checked: a bad table fails at load with the file and entry named."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"config table {path}: cannot read it ({e}); fix or delete the file") from None
    entries = data.get("entries") if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError(f"config table {path}: expected a list of entries, or {{\"entries\": [...]}}")
    return check(entries, f"config table {path}")


def check(entries, where="config table"):
    """The entries, each checked; returns them without their comments and measurements."""
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or e.get("kernel") not in KERNELS or not isinstance(e.get("config"), dict):
            raise ValueError(f"{where}: entry {i} needs a kernel from {KERNELS} and a config dict, got {e!r}")
        unknown = set(e) - {"kernel", "config", *MATCH_KEYS} - {"us", "default_us", "runs", "note"}
        if unknown:
            raise ValueError(f"{where}: entry {i} has unknown keys {sorted(unknown)}")
        want, have = CONFIG_KEYS[e["kernel"]], set(e["config"])
        if have != want:
            raise ValueError(f"{where}: entry {i} ({e['kernel']}) config lacks {sorted(want - have)} and has unknown "
                             f"{sorted(have - want)}; a {e['kernel']} config has exactly {sorted(want)}")
    return [{k: v for k, v in e.items() if k in ("kernel", "config", *MATCH_KEYS)} for e in entries]


_NONE = object()


def _freeze(entries):
    """Entries as a hashable tuple of (kernel, max_M, N, K, mode, config as JSON)."""
    return tuple((e["kernel"], *(e.get(k, _NONE) for k in MATCH_KEYS), json.dumps(e["config"], sort_keys=True))
                 for e in entries)


@functools.cache
def _default():
    return _freeze(load(DEFAULT_FILE))


@functools.cache
def _interpreter():
    return _freeze(load(INTERPRETER_FILE))


@functools.cache
def _device_table(name):
    path = device_file(name) if name else None
    return _freeze(load(path)) if path is not None and path.exists() else ()


@functools.cache
def _device_name(index):
    import torch

    return torch.cuda.get_device_name(index)


def table_for(device):
    """The frozen entries consulted for tensors on `device` (a torch.device), most specific first."""
    if _override is not None:
        return _override + _default()
    if _checks.INTERPRETED:
        return _interpreter() + _default()
    name = _device_name(device.index if device.index is not None else 0) if device.type == "cuda" else None
    return _device_table(name) + _default()


@contextlib.contextmanager
def use(entries):
    """Inside the block, `entries` (a list, or a table file's path) come before the default table
    for every launch, whatever the device (the tuner's candidates; tests of every config)."""
    global _override
    previous = _override
    _override = _freeze(load(entries) if isinstance(entries, (str, Path)) else check(entries))
    try:
        yield
    finally:
        _override = previous


def block(limit, dim):
    """A block size of at most `limit`, no larger than dim's next power of two, and at least 16."""
    return max(16, min(limit, triton.next_power_of_2(dim)))


@functools.lru_cache(maxsize=4096)
def _lookup(table, kernel, M, N, K, mode):
    for name, max_m, n, k, md, config in table:
        if (name == kernel and (max_m is _NONE or M <= max_m) and n in (_NONE, N) and k in (_NONE, K)
                and md in (_NONE, mode)):
            return config
    raise LookupError(f"no launch configuration for {kernel} at M={M} N={N} K={K} mode={mode}: the default table "
                      f"{DEFAULT_FILE} must end each kernel with an entry that matches everything")


def lookup(kernel, device, M=0, N=0, K=0, mode=None):
    """The config (a fresh dict) of the first entry for `kernel` that matches the shape."""
    return json.loads(_lookup(table_for(device), kernel, M, N, K, mode))
