"""Every kernel specialization the Triton trainer (`--backend graph` and `fused`) and the
autograd library (kernels.OPS) launch compiles for real GPUs.

Triton's interpreter (which the other kernel tests use on a CPU machine) never runs the
compiler, and a kernel can be correct there yet fail to compile: the linear backward did, for
every launch whose block sizes differ. So here the backends' own code runs one iteration on
the CPU with launches recorded instead of run (kernels.aot.record), at batch 1, 8, 128, 1024
and 8192, and each recorded specialization is compiled for sm_90 (H100/H200) and sm_80 (A100)
with triton's own ptxas, exactly as a GPU would compile it. `python -m benchmarks.kernel_report`
does the work in a subprocess, since this process runs kernels in the interpreter.

Also asserted: a launch of the captured iteration takes one specialization in every iteration
(`variants` = 1); a second one would compile during a CUDA-graph capture and fail. At batch 128
and 8192 on sm_90 (the H100/H200 the configs are for: kernels/configs/default.json, and every
tuned card's table there) nothing spills registers, in every precision, with and without the
R1 penalty and G's EMA (fastgan.recipes: their own variants of d_grad and adam) (sm_80's large tiles
still spill at batch 8192: benchmarks/NOTES.md); the tensor-core precisions (tf32x3, tf32)
compile their products to mma/wgmma.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastgan.kernels import aot

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 8, 128, 1024, 8192)
RUNS = (1, 3)  # one GAN, and a sweep of three in one trainer (graph only)
BACKENDS = ("graph", "ops")  # the Triton trainer (graph and fused) and the autograd library
NO_SPILL_BATCHES = (128, 8192)
TENSOR_CORES = ("tf32x3", "tf32")
DEVICE_TABLES = sorted(p for p in (ROOT / "kernels" / "configs").glob("*.json") if p.name not in ("default.json", "interpreter.json"))

pytestmark = pytest.mark.skipif(aot.toolchain_missing() is not None, reason=f"cannot compile: {aot.toolchain_missing()}")


def _report(*args):
    """The kernel report's records for each argument list, one subprocess each, in parallel."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.kernel_report", "--json", *a], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in args]
    out = []
    for a, proc in zip(args, procs):
        stdout, stderr = proc.communicate(timeout=1800)
        assert proc.returncode in (0, 1), f"kernel_report {' '.join(a)} failed (rc {proc.returncode}):\n{stderr[-3000:]}"
        out.append(json.loads(stdout))
    return out


@pytest.fixture(scope="module")
def reports():
    """Per architecture: every backend, batch and run count in IEEE fp32, and the graph trainer
    in the tensor-core precisions at batch 128 and 8192; both architectures at once (a core each)."""
    ieee = _report(*(["--arch", str(arch), "--batch", *map(str, BATCHES), "--backend", *BACKENDS,
                      "--runs", *map(str, RUNS)] for arch in aot.ARCHS))
    tensor_cores = _report(*(["--arch", str(arch), "--batch", *map(str, NO_SPILL_BATCHES), "--backend", "graph",
                              "--precision", *TENSOR_CORES] for arch in aot.ARCHS))
    # fastgan.recipes' kernel variants (R1 in d_grad, G's EMA in adam), every precision, 1 and 3 runs
    options = _report(*(["--arch", str(arch), "--batch", *map(str, NO_SPILL_BATCHES), "--backend", "graph", "--options",
                         "--precision", "ieee", *TENSOR_CORES, "--runs", *map(str, RUNS)] for arch in aot.ARCHS))
    return {arch: a + b + c for arch, a, b, c in zip(aot.ARCHS, ieee, tensor_cores, options)}


@pytest.mark.parametrize("arch", aot.ARCHS)
def test_every_launched_specialization_compiles(reports, arch):
    records = reports[arch]
    failed = [f"{r['backend']} batch {r['batch']} {r['kernel']} {r['shape']} blocks {r['blocks']} {r['flags']}: {r['error']}"
              for r in records if r["error"]]
    assert not failed, "compile errors:\n" + "\n".join(failed)
    assert {(r["backend"], r["batch"], r["runs"], r["precision"], r["options"]) for r in records} == (
        {("graph", n, k, "ieee", False) for n in BATCHES for k in RUNS} | {("ops", n, 1, "ieee", False) for n in BATCHES}
        | {("graph", n, 1, p, False) for n in NO_SPILL_BATCHES for p in TENSOR_CORES}
        | {("graph", n, k, p, True) for n in NO_SPILL_BATCHES for k in RUNS for p in ("ieee", *TENSOR_CORES)})
    options = [r for r in records if r["options"]]  # R1 and the EMA compiled: their flags are on
    assert any(r["kernel"] == "d_grad" and "R1=True" in r["flags"] for r in options)
    assert any(r["kernel"] == "adam" and "EMA=True" in r["flags"] for r in options)
    assert all(r["regs"] > 0 and r["programs"] >= 1 for r in records)


@pytest.mark.parametrize("arch", aot.ARCHS)
def test_captured_iteration_has_one_specialization_per_launch(reports, arch):
    unstable = [f"batch {r['batch']} {r['kernel']} {r['shape']}: {r['variants']} variants"
                for r in reports[arch] if r["backend"] == "graph" and r["variants"] != 1]
    assert not unstable, "launches whose specialization changes between iterations:\n" + "\n".join(unstable)


def test_no_spills_at_batch_128_and_8192_on_sm90(reports):
    spilled = [f"{r['backend']} batch {r['batch']} runs {r['runs']} {r['precision']} {r['kernel']} {r['shape']} {r['flags']} "
               f"{r['blocks']}: {r['spill_bytes']} B" for r in reports[90]
               if r["batch"] in NO_SPILL_BATCHES and r["spill_bytes"] != 0]
    assert not spilled, "launches that spill registers:\n" + "\n".join(spilled)


@pytest.mark.parametrize("arch", aot.ARCHS)
def test_tensor_core_precisions_compile_to_tensor_core_products(reports, arch):
    """Every launch with a matrix product (linear_act's, d_input_grad's: `dot` is "-" for the
    others) uses the tensor cores in tf32x3/tf32 and the FMA units in ieee."""
    products = [r for r in reports[arch] if r["precision"] in TENSOR_CORES and r["dot"] != "-"]
    assert {r["kernel"] for r in products} >= {"linear_act_fwd", "linear_act_bwd", "d_input_grad"}
    assert all(r["dot"] in ("mma", "wgmma") for r in products), \
        [(r["precision"], r["kernel"], r["shape"], r["dot"]) for r in products if r["dot"] not in ("mma", "wgmma")]
    assert all(r["dot"] == "fma" for r in reports[arch] if r["precision"] == "ieee" and r["dot"] != "-")


# A table known to spill on sm_90 (every supported Triton): D's input gradient at batch 8192 with
# 4 warps, where ptxas settles on 32 registers and spills about 5.4 KB.
SPILLING_TABLE = {"entries": [{"kernel": "d_input_grad",
                               "config": {"BLOCK_M": 64, "BLOCK_K": 32, "SPLIT": 8, "num_warps": 4, "num_stages": 2}}]}


def _unfit(records):
    return [f"{r['kernel']} {r['shape']} {r['blocks']}: error {r['error']}, {r['spill_bytes']} B spilled, "
            f"{r['variants']} variants" for r in records if r["error"] or r["spill_bytes"] != 0 or r["variants"] != 1]


def test_tuned_tables_compile_without_spills(tmp_path):
    """Every card's tuned table in kernels/configs (benchmarks.tune) at batch 128 and 8192 on
    sm_90: no compile error, no spill, one specialization per launch. The same check, run on a
    table known to spill, must catch it (so it holds even while no tuned table is committed)."""
    spilling = tmp_path / "spilling.json"
    spilling.write_text(json.dumps(SPILLING_TABLE))
    args = [("--batch", "8192", "--table", str(spilling))]
    args += [("--batch", *map(str, NO_SPILL_BATCHES), "--table", str(t)) for t in DEVICE_TABLES]
    results = _report(*(["--arch", "90", "--backend", "graph", "--runs", "1", *a] for a in args))
    assert any("d_input_grad" in line for line in _unfit(results[0])), "the spill check missed a spilling table"
    for table, records in zip(DEVICE_TABLES, results[1:]):
        assert not _unfit(records), f"{table.name}:\n" + "\n".join(_unfit(records))


def test_other_image_sizes_compile_without_spills():
    """Your own images (fastgan.images): the Triton trainer for 32x32 grey (X = 1,024) and 32x32
    RGB (X = 3,072) images at batch 128 on sm_90, every precision, with and without R1 and G's
    EMA: no compile error, no spill, one specialization per launch (the default table's entries
    for other shapes than MNIST's serve them)."""
    common = ["--arch", "90", "--backend", "graph", "--batch", "128", "--x-dim", "1024", "3072",
              "--precision", "ieee", *TENSOR_CORES]
    plain, options = _report(common, [*common, "--options"])
    records = plain + options
    assert {(r["x_dim"], r["options"]) for r in records} == {(x, o) for x in (1024, 3072) for o in (False, True)}
    assert any(r["kernel"] == "d_grad" and r["shape"] == "256x3072x128" for r in records)
    assert not _unfit(records), "\n".join(_unfit(records))


def test_other_hidden_widths_compile_without_spills():
    """--hidden: the Triton trainer at H = 64, 256, 512 and 1,024 (D's kernels in column tiles past
    kernels.shared.WHOLE_H) at batch 128 and 8192 on sm_90, every precision, with and without R1
    and G's EMA: no compile error, one specialization per launch, and no spill past WHOLE_H. (At
    H = 64 d_grad with R1 in tf32 at batch 128 spills 16 B on Triton 3.6, none on 3.9: reported by
    kernel_report, not asserted.)"""
    common = ["--arch", "90", "--backend", "graph", "--batch", *map(str, NO_SPILL_BATCHES), "--hidden", "64", "256",
              "512", "1024", "--precision", "ieee", *TENSOR_CORES]
    plain, options = _report(common, [*common, "--options"])
    records = plain + options
    assert {(r["hidden"], r["options"]) for r in records} == {(h, o) for h in (64, 256, 512, 1024) for o in (False, True)}
    assert any(r["kernel"] == "d_grad" and "H_TILED=True" in r["flags"] and "R1=True" in r["flags"] for r in records)
    wide = [r for r in records if r["hidden"] > 128]
    narrow = [dict(r, spill_bytes=0) for r in records if r["hidden"] <= 128]
    assert not _unfit(wide) and not _unfit(narrow), "\n".join(_unfit(wide) + _unfit(narrow))


def test_linear_backward_with_unequal_blocks_is_covered(reports):
    """The case that once failed to compile (N = 1: BLOCK_N 16 against BLOCK_M, BLOCK_K 64) is launched."""
    def unequal(blocks):  # "dx16x64x32 dw64x64x64/4": a tile whose block sizes differ
        return any(len(set(tile.lstrip("dxw").split("/")[0].split("x"))) > 1 for tile in blocks.split())

    assert any(r["kernel"] == "linear_act_bwd" and unequal(r["blocks"]) for r in reports[90])


def test_report_refuses_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.kernel_report"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "TRITON_INTERPRET unset" in proc.stderr
