"""What the GPU would be asked to run: every kernel launch of one training iteration, compiled
ahead of time for a GPU architecture on this machine (no GPU needed), with its resources.

    python -m benchmarks.kernel_report                      # sm_90, batch 1, 8, 128, 1024, 8192
    python -m benchmarks.kernel_report --batch 128 8192 --arch 90 --json
    python -m benchmarks.kernel_report --batch 128 --precision tf32x3 --table kernels/configs/<device>.json

Per launch of an iteration: `graph` is the Triton trainer (`--backend graph`, and `--backend
fused`, which launches the same kernels un-captured; with --options, every run with the R1 penalty
and G's EMA, fastgan.recipes, which add their variants of d_grad and adam); `ops` is the autograd library
(kernels.OPS: linear_relu, sigmoid_bce_with_logits, ...) driving the reference step. Programs launched against an H100's 132
SMs, registers per thread, bytes spilled per thread (cuobjdump's STACK + LOCAL), shared memory,
and how the products are computed (`fma`, `mma` or `wgmma`, read from the PTX). `variants` is
the number of distinct specializations the launch takes over several captured iterations: more
than 1 means a replay could compile a new kernel mid-capture. Reported, not asserted; the
tests (tests/test_kernels_compile.py) assert that everything compiles and `variants` is 1.
Must run with TRITON_INTERPRET unset (it compiles, it does not interpret).
"""

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
    sys.exit("error: kernel_report compiles kernels; run it with TRITON_INTERPRET unset")

import torch
import triton

from fastgan import kernels
from fastgan.kernels import aot, configs
from fastgan.kernels.shared import PRECISIONS

from fastgan import model
from fastgan.batcher import Batcher
from fastgan.graph import GraphTrainer
from fastgan.recipes import Hyper

BATCHES = (1, 8, 128, 1024, 8192)
BACKENDS = ("graph", "ops")
H100_SMS = 132
ITERS = 4  # graph iterations recorded: enough to see a per-iteration alignment change (odd rows)


OPTIONS = Hyper(r1=1.0, g_ema=0.999, lr_decay="cosine")  # --options: every launch variant of fastgan.recipes


def backend_launches(backend, batch, runs=1, precision="ieee", options=False, x_dim=model.X_DIM, hidden=model.H_DIM):
    """The launches of `ITERS` iterations (graph, `runs` GANs at once, products in `precision`,
    with R1 and G's EMA if `options`, on images of x_dim values, hidden layers `hidden` wide) or
    one (ops), per iteration."""
    torch.manual_seed(0)
    images = torch.rand(max(batch, 64), x_dim)
    params = model.init_params(0, "cpu", x_dim, hidden)
    hyper = OPTIONS if options else Hyper()
    with aot.record() as launches:
        if backend == "graph":
            if runs == 1:
                trainer = GraphTrainer(params, None, Batcher(images, batch, seed=0), ITERS, capture=False,
                                       precision=precision, hyper=hyper, twins=False)  # the Triton launches, recorded
            else:
                trainer = GraphTrainer([model.init_params(r, "cpu", x_dim, hidden) for r in range(runs)], None,
                                       [Batcher(images, batch, seed=r) for r in range(runs)], ITERS, capture=False,
                                       precision=precision, hyper=[hyper] * runs, twins=False)
            trainer.advance(ITERS)
            iters = ITERS
        elif backend == "ops":
            step = model.AdamStep(params, 1e-3, kernels.OPS)
            step(images[:batch], torch.rand(batch, model.Z_DIM), torch.rand(batch, model.Z_DIM))
            iters = 1
        else:
            raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    per = len(launches) // iters
    assert per * iters == len(launches), "iterations launched different numbers of kernels"
    return [launches[i * per : (i + 1) * per] for i in range(iters)]


def _describe(launch):
    """(shape, blocks, flags) of a launch for the report: blocks as MxNxK (dx and dw tiles of the
    backward apart, /S for a split-N dx or a split-M weight gradient), flags the other constexprs."""
    ints = launch.ints()
    shape = "x".join(str(ints[k]) for k in ("M", "N", "K", "H", "n") if k in ints)
    consts = launch.constexprs()
    tiles = []
    for prefix in ("", "DX_", "DW_"):
        dims = [consts[f"{prefix}BLOCK_{d}"] for d in ("M", "N", "K", "H") if f"{prefix}BLOCK_{d}" in consts]
        needed = {"DX_": consts.get("NEED_DX"), "DW_": consts.get("NEED_DW")}.get(prefix, True)
        if dims and needed:
            split = consts.get({"DX_": "SPLIT_N", "DW_": "SPLIT_M"}.get(prefix), 1)
            tiles.append(prefix[:2].lower() + "x".join(map(str, dims)) + (f"/{split}" if split > 1 else ""))
    if "BLOCK" in consts:
        tiles.append(str(consts["BLOCK"]))
    skip = ("BLOCK", "DX_BLOCK", "DW_BLOCK", "SPLIT_M", "SPLIT_N", "PRECISION")
    flags = ",".join(f"{k}={v}" for k, v in consts.items() if not k.startswith(skip))
    return shape, " ".join(tiles), flags


def report(archs=(90,), batches=BATCHES, backends=BACKENDS, runs=(1,), precisions=("ieee",), progress=None,
           options=False, x_dims=(model.X_DIM,), hiddens=(model.H_DIM,)):
    """One record per (arch, backend, batch, runs, precision, image size, hidden width, launch of
    the iteration); the autograd ops (`ops`) train one run in IEEE fp32 only, and never with `options`."""
    compilers = {arch: aot.Compiler(arch) for arch in archs}
    records = []
    cases = [(b, n, r, p, x, h) for b in backends for n in batches for r in runs for p in precisions for x in x_dims
             for h in hiddens if b == "graph" or (r == 1 and p == "ieee" and not options)]
    for backend, batch, n_runs, precision, x_dim, hidden in cases:
        iterations = backend_launches(backend, batch, n_runs, precision, options, x_dim, hidden)
        for site, launch in enumerate(iterations[0]):
            shape, blocks, flags = _describe(launch)
            for arch, compiler in compilers.items():
                rec = {
                    "arch": f"sm_{arch}", "backend": backend, "batch": batch, "runs": n_runs, "precision": precision,
                    "options": options, "x_dim": x_dim, "hidden": hidden,
                    "kernel": launch.name,
                    "shape": shape, "blocks": blocks, "flags": flags, "programs": launch.programs,
                    "variants": len({compiler.key(it[site]) for it in iterations}),
                    "regs": None, "spill_bytes": None, "shared_bytes": None, "num_warps": None, "dot": None,
                    "error": None,
                }
                try:
                    rec.update(aot.resources(compiler.compile(launch)))
                except Exception as e:  # a compile error is a result here, reported per launch
                    rec["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
                records.append(rec)
                if progress:
                    progress(rec)
    return records


def markdown(records):
    cols = ["arch", "backend", "batch", "runs", "precision", "kernel", "shape", "blocks", "flags", "programs", "regs", "spill_bytes",
            "shared_bytes", "num_warps", "dot", "variants"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in records:
        cells = [str(r[c]) if r[c] is not None else "—" for c in cols]
        cells[cols.index("programs")] = f"{r['programs']} / {H100_SMS}"
        if r["error"]:
            cells[cols.index("regs")] = f"**compile error**: {r['error']}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, action="append", help="compute capability, e.g. 90 (H100), 80 (A100); repeatable")
    p.add_argument("--batch", type=int, nargs="+", default=list(BATCHES))
    p.add_argument("--backend", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    p.add_argument("--runs", type=int, nargs="+", default=[1], help="GANs trained at once (graph)")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=["ieee"], help="products' precision (graph)")
    p.add_argument("--x-dim", type=int, nargs="+", default=[model.X_DIM],
                   help="values per image (C x S x S): 784 MNIST, 1024 = 32x32 grey, 3072 = 32x32 RGB")
    p.add_argument("--hidden", type=int, nargs="+", default=[model.H_DIM], help="G's and D's hidden width (--hidden)")
    p.add_argument("--options", action="store_true", help="every run with R1 and G's EMA (their kernel variants)")
    p.add_argument("--table", help="a launch-config table to use before the default (e.g. a tuned card's)")
    p.add_argument("--json", action="store_true", help="print the records as a JSON list")
    p.add_argument("--out", help="write the report to this file instead of printing it")
    args = p.parse_args(argv)
    missing = aot.toolchain_missing()
    if missing:
        print(f"error: cannot compile here: {missing}", file=sys.stderr)
        return 2
    with configs.use(args.table) if args.table else contextlib.nullcontext():
        records = report(tuple(args.arch or (90,)), args.batch, args.backend, args.runs, args.precision,
                         options=args.options, x_dims=tuple(args.x_dim), hiddens=tuple(args.hidden))
    text = json.dumps(records, indent=1) if args.json else f"Triton {triton.__version__}\n\n{markdown(records)}"
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 1 if any(r["error"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
