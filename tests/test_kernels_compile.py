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
(`variants` = 1); a second one would compile during a CUDA-graph capture and fail.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernels import aot

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 8, 128, 1024, 8192)
RUNS = (1, 3)  # one GAN, and a sweep of three in one trainer (graph only)
BACKENDS = ("graph", "ops")  # the Triton trainer (graph and fused) and the autograd library

pytestmark = pytest.mark.skipif(aot.toolchain_missing() is not None, reason=f"cannot compile: {aot.toolchain_missing()}")


@pytest.fixture(scope="module")
def reports():
    """The kernel report's records per architecture; both compiled at once (one core each)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    procs = {
        arch: subprocess.Popen(
            [sys.executable, "-m", "benchmarks.kernel_report", "--json", "--arch", str(arch),
             "--batch", *map(str, BATCHES), "--backend", *BACKENDS, "--runs", *map(str, RUNS)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for arch in aot.ARCHS
    }
    out = {}
    for arch, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=1800)
        assert proc.returncode in (0, 1), f"kernel_report for sm_{arch} failed (rc {proc.returncode}):\n{stderr[-3000:]}"
        out[arch] = json.loads(stdout)
    return out


@pytest.mark.parametrize("arch", aot.ARCHS)
def test_every_launched_specialization_compiles(reports, arch):
    records = reports[arch]
    failed = [f"{r['backend']} batch {r['batch']} {r['kernel']} {r['shape']} blocks {r['blocks']} {r['flags']}: {r['error']}"
              for r in records if r["error"]]
    assert not failed, "compile errors:\n" + "\n".join(failed)
    assert {(r["backend"], r["batch"], r["runs"]) for r in records} == (
        {("graph", n, k) for n in BATCHES for k in RUNS} | {("ops", n, 1) for n in BATCHES})
    assert all(r["regs"] > 0 and r["programs"] >= 1 for r in records)


@pytest.mark.parametrize("arch", aot.ARCHS)
def test_captured_iteration_has_one_specialization_per_launch(reports, arch):
    unstable = [f"batch {r['batch']} {r['kernel']} {r['shape']}: {r['variants']} variants"
                for r in reports[arch] if r["backend"] == "graph" and r["variants"] != 1]
    assert not unstable, "launches whose specialization changes between iterations:\n" + "\n".join(unstable)


def test_linear_backward_with_unequal_blocks_is_covered(reports):
    """The case that once failed to compile (N = 1: BLOCK_N 16 against BLOCK_M, BLOCK_K 64) is launched."""
    assert any(r["kernel"] == "linear_act_bwd" and len(set(r["blocks"].split("x"))) > 1 for r in reports[90])


def test_report_refuses_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.kernel_report"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "TRITON_INTERPRET unset" in proc.stderr
