"""benchmarks.tune's table and command line (its tuning runs in gpu_check.sh's smoke mode in CI,
and for real on a GPU machine): the entries it writes load as a config table and are looked up
as intended, the most specific (smallest measured M) first; it refuses to tune without a GPU
and to write a card's table from the smoke run."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fastgan.kernels import configs

from benchmarks import tune

ROOT = Path(__file__).resolve().parents[1]


def test_entries_load_and_the_smallest_measured_m_that_fits_wins(tmp_path):
    small, large = tune.CANDIDATES["linear_act_fwd"][0], tune.CANDIDATES["linear_act_fwd"][4]
    chosen = {
        ("linear_act_fwd", 16384, 128, 784, None): {"config": large, "us": {64: 900.0}, "default_us": {64: 950.0}},
        ("linear_act_fwd", 256, 128, 784, None): {"config": small, "us": {1: 4.0}, "default_us": {1: 5.0}},
        ("linear_act_bwd", 256, 128, 784, "dw"): {"config": tune.CANDIDATES["linear_act_bwd"][3], "us": {1: 3.0},
                                                  "default_us": {1: 3.5}},
    }
    path = tmp_path / "card.json"
    tune.write(path, {"entries": tune.entries(chosen)})
    assert not list(tmp_path.glob("*.tmp"))
    cpu = torch.device("cpu")
    with configs.use(path):
        assert configs.lookup("linear_act_fwd", cpu, M=256, N=128, K=784) == small
        assert configs.lookup("linear_act_fwd", cpu, M=128, N=128, K=784) == small  # below the smallest measured
        assert configs.lookup("linear_act_fwd", cpu, M=2048, N=128, K=784) == large
        assert configs.lookup("linear_act_bwd", cpu, M=256, N=128, K=784, mode="dw")["SPLIT_M"] == 8
        assert configs.lookup("linear_act_bwd", cpu, M=256, N=128, K=784, mode="dx") == configs.lookup(
            "linear_act_bwd", torch.device("meta"), M=256, N=128, K=784, mode="dx")  # untuned mode: the default


def test_every_candidate_is_a_complete_config():
    """Each candidate has exactly the keys its kernel's launcher reads (configs.check refuses a
    missing or unknown one: it would fail at launch, or be ignored), and every split fits the
    MAX_SPLIT slots the trainer under tuning allocates."""
    for kernel, candidates in tune.CANDIDATES.items():
        configs.check([{"kernel": kernel, "config": c} for c in candidates], f"tune.CANDIDATES[{kernel!r}]")
        for c in candidates:
            assert all(c.get(k, 1) <= tune.MAX_SPLIT for k in ("SPLIT_M", "SPLIT_N", "SPLIT", "SPLIT_K")), c


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
@pytest.mark.parametrize("args, message", [
    ([], "tuning times kernels on a CUDA GPU and none is visible"),
    (["--smoke"], "--smoke needs --out"),
])
def test_refusals(args, message):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.tune", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr
