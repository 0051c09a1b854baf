"""python -m fastgan.sample on a short CPU run: grids, interpolation walks, the raw array, and
bad input (one line, nothing overwritten)."""

import matplotlib.image as mimage
import numpy as np
import pytest
import torch
from helpers import fake_arrays

from fastgan import checkpoint, model, run, sample
from fastgan.atomic import save_npz
from fastgan.config import Config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 20-iteration CPU run (eager) with two checkpoints."""
    import fastgan.data as data

    tmp = tmp_path_factory.mktemp("sample")
    old = data.N_TRAIN, data.N_TEST
    data.N_TRAIN, data.N_TEST = 300, 50
    try:
        save_npz(tmp / "data" / "mnist.npz", fake_arrays(300, 50))
        cfg = Config(iters=20, batch_size=8, log_every=5, sample_every=5, ckpt_every=10, eval_every=1000,
                     device="cpu", backend="eager", out=str(tmp / "run"), data_dir=str(tmp / "data"))
        return run.train(cfg, log=lambda m: None, show_progress=False)
    finally:
        data.N_TRAIN, data.N_TEST = old


def _cli(capsys, *argv):
    code = sample.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out.strip(), cap.err.strip()


def test_grid_of_samples_from_the_newest_checkpoint(trained, tmp_path, capsys):
    out = tmp_path / "s.png"
    code, said, _ = _cli(capsys, trained, "--n", "10", "--out", out, "--npz", "--seed", "3")
    assert code == 0 and f"(iteration 20) -> {out}" in said
    img = mimage.imread(out)
    assert img.shape[:2] == (3 * (3 * 28 + 2 * 2), 3 * (4 * 28 + 3 * 2))  # 10 samples: 3 rows of 4, upscaled x3
    pixels = np.load(out.with_suffix(".npz"))["images"]
    assert pixels.shape == (10, 28, 28) and pixels.dtype == np.uint8
    # the same generator on the same noise, in the library: what the array must hold
    params = checkpoint.load(trained / "checkpoints" / "0000020.pt")["params"]
    want = model.generator(params, sample.noise(10, 3)).detach().numpy().reshape(-1, 28, 28)
    assert np.abs(pixels.astype(np.float64) - want * 255).max() <= 0.5 + 1e-3


def test_default_out_is_beside_the_checkpoint_and_never_overwritten(trained, capsys):
    ck = trained / "checkpoints" / "0000010.pt"
    code, said, _ = _cli(capsys, ck)
    default = ck.with_name("0000010-samples.png")
    assert code == 0 and default.is_file()
    before = default.read_bytes()
    code, _, err = _cli(capsys, ck, "--seed", "9")
    assert code == 2 and err == f"error: {default} exists; pass --force to overwrite it, or --out another file"
    assert default.read_bytes() == before
    assert _cli(capsys, ck, "--seed", "9", "--force")[0] == 0 and default.read_bytes() != before


def test_interpolation_walks(trained, tmp_path, capsys):
    out = tmp_path / "w.png"
    assert _cli(capsys, trained, "--interpolate", "3", "--out", out)[0] == 0
    assert mimage.imread(out).shape[:2] == (3 * (3 * 28 + 2 * 2), 3 * (sample.STEPS * 28 + (sample.STEPS - 1) * 2))
    z = sample.walks(3, 0).view(3, sample.STEPS, -1)
    ends = sample.noise(6, 0).view(3, 2, -1)
    torch.testing.assert_close(z[:, 0], ends[:, 0])
    torch.testing.assert_close(z[:, -1], ends[:, 1])
    torch.testing.assert_close(z[:, 1] - z[:, 0], z[:, 2] - z[:, 1])  # linear steps


@pytest.mark.parametrize("args, message", [
    (["--n", "0"], "error: --n must be in 1..10,000 (one PNG grid of them), got 0"),
    (["--n", "1000000000000"], "error: --n must be in 1..10,000 (one PNG grid of them), got 1,000,000,000,000"),
    (["--interpolate", "-1"], "error: --interpolate must be in 0..1,000 rows, got -1"),
    (["--seed", "-2"], "error: --seed must be in 0..2**63 - 1, got -2"),
])
def test_bad_numbers(trained, capsys, args, message):
    assert _cli(capsys, trained, *args)[::2] == (2, message)


def test_missing_run_and_corrupt_checkpoint(tmp_path, capsys):
    code, _, err = _cli(capsys, tmp_path / "nope")
    assert code == 2 and err == f"error: checkpoint {tmp_path / 'nope'}: no such file or folder"
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code, _, err = _cli(capsys, bad, "--out", tmp_path / "x.png")
    assert code == 2 and "unreadable" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_out_must_be_a_png(trained, tmp_path, capsys):
    """--out x.txt used to get a PNG under a .txt name: one line, nothing written."""
    code, _, err = _cli(capsys, trained, "--out", tmp_path / "x.txt")
    assert (code, err) == (2, f"error: --out {tmp_path / 'x.txt'}: the grid is written as a PNG; give a name ending in .png")
    assert not (tmp_path / "x.txt").exists()
