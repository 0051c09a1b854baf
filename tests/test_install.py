"""The installed tool: the wheel holds the package, its kernels (as `fastgan.kernels`, with their
launch tables) and the `fastgan` command, and nothing of the repository's tests or benchmarks; it
installs beside another top-level package named `kernels` and trains, resumes, samples and loads
from a folder outside the repository. (CI also installs the real wheel into a fresh environment
next to the package index's `kernels` and trains MNIST from an empty folder: .ci/run.)"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLASH = '"""A stand-in for the package index\'s unrelated `kernels` package."""\nCLASH = True\n'


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                        str(ROOT)], capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and "No module named" in r.stderr and "setuptools" in r.stderr:
        pytest.skip("building the wheel offline needs setuptools in this environment")
    assert r.returncode == 0, r.stderr[-3000:]
    (path,) = out.glob("fastgan-*.whl")
    return path


def test_the_wheel_holds_the_package_kernels_tables_and_command_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"fastgan", next(t for t in tops if t.endswith(".dist-info"))}, tops  # no top-level kernels
    assert "fastgan/kernels/d_grad.py" in names and "fastgan/kernels/configs/default.json" in names
    assert "fastgan/__main__.py" in names and not any("test" in n.split("/")[-1] for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fastgan = fastgan.__main__:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_installed_beside_a_package_named_kernels_it_trains_resumes_samples_and_loads(wheel, tmp_path):
    site, work = tmp_path / "site", tmp_path / "empty"
    work.mkdir()
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (site / "kernels").mkdir()
    (site / "kernels" / "__init__.py").write_text(CLASH)
    rng = np.random.default_rng(0)
    np.savez(work / "imgs.npz", images=rng.integers(0, 256, (64, 12, 12), dtype=np.uint8))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1", FASTGAN_DATA=str(tmp_path / "cache"))
    fastgan = [sys.executable, str(site / "bin" / "fastgan")]

    def run(*argv):
        r = subprocess.run(list(argv), cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (argv, r.stdout[-2000:], r.stderr[-3000:])
        return r.stdout + r.stderr

    run(sys.executable, "-c", "import kernels, fastgan, fastgan.kernels as k; assert kernels.CLASH; "
        f"assert k.__file__.startswith({str(site)!r}) and fastgan.__file__.startswith({str(site)!r})")
    assert "subcommands:" in run(sys.executable, "-m", "fastgan", "--help")
    common = ("--dataset", "imgs.npz", "--batch-size", "8", "--device", "cpu", "--ckpt-every", "4", "--eval-every", "8")
    out = run(*fastgan, "train", "--iters", "4", "--backend", "fused", "--out", "runs/a", *common)
    assert "fused backend" in out
    run(*fastgan, "train", "--resume", "runs/a", "--iters", "8")
    run(*fastgan, "sample", "runs/a", "--n", "4")
    run(sys.executable, "-c", "import fastgan; G = fastgan.load('runs/a', device='cpu'); "
        "assert tuple(G.sample(3, seed=0).shape) == (3, 1, 12, 12)")
    assert (work / "runs" / "a" / "checkpoints" / "0000008.pt").is_file()
    assert not (site / "tests").exists() and not (site / "benchmarks").exists()
