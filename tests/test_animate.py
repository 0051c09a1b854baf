"""python -m fastgan.animate: a run's sample grids as a labelled GIF, thinned with --every."""

import numpy as np
import pytest
from PIL import Image

from fastgan import animate
from fastgan.plots import save_grid


@pytest.fixture
def run_dir(tmp_path):
    """A run folder with 7 grids, each a different shade so frames can be told apart."""
    for i in range(7):
        save_grid(np.full((16, 784), i / 6, dtype=np.float32), tmp_path / "samples" / f"{(i + 1) * 1000:07d}.png")
    return tmp_path


def _cli(capsys, *argv):
    code = animate.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out.strip(), cap.err.strip()


def test_gif_has_a_frame_per_grid_in_order(run_dir, capsys):
    code, said, _ = _cli(capsys, run_dir)
    out = run_dir / "progress.gif"
    assert code == 0 and said == f"7 frames (iterations 1,000..7,000) -> {out}"
    gif = Image.open(out)
    assert gif.n_frames == 7
    means = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frame = np.asarray(gif.convert("L"), dtype=np.float64)
        means.append(frame[40:, :].mean())  # below the label: the grid's shade
    assert means == sorted(means) and means[0] < means[-1]


def test_every_thins_frames_and_keeps_the_last(run_dir, capsys):
    assert animate.frames(run_dir, 3) == [(i, run_dir / "samples" / f"{i:07d}.png") for i in (1000, 4000, 7000)]
    assert [i for i, _ in animate.frames(run_dir, 4)] == [1000, 5000, 7000]
    assert _cli(capsys, run_dir, "--every", "3", "--out", run_dir / "t.gif")[0] == 0
    assert Image.open(run_dir / "t.gif").n_frames == 3


@pytest.mark.parametrize("args, message", [
    (["--every", "0"], "error: --every must be at least 1, got 0"),
    (["--fps", "0"], "error: --fps must be positive, got 0.0"),
    (["--out", "x.avi"], "error: --out x.avi: write a .gif or an .mp4"),
])
def test_bad_arguments(run_dir, capsys, args, message):
    assert _cli(capsys, run_dir, *args)[::2] == (2, message)


def test_missing_run_and_existing_out(tmp_path, run_dir, capsys):
    code, _, err = _cli(capsys, tmp_path / "none")
    assert code == 2 and err.startswith(f"error: no sample grids in {tmp_path / 'none' / 'samples'}")
    out = run_dir / "progress.gif"
    out.write_bytes(b"keep")
    code, _, err = _cli(capsys, run_dir)
    assert code == 2 and err == f"error: {out} exists; pass --force to overwrite it, or --out another file"
    assert out.read_bytes() == b"keep"
    assert _cli(capsys, run_dir, "--force")[0] == 0 and out.read_bytes() != b"keep"


def test_corrupt_grid_is_one_line(run_dir, capsys):
    bad = run_dir / "samples" / "0004000.png"
    bad.write_bytes(b"not a png at all")
    code, _, err = _cli(capsys, run_dir)
    assert code == 2 and err.startswith(f"error: {bad} is not a readable PNG") and len(err.splitlines()) == 1
    assert not list(run_dir.glob("*.tmp*")) and not (run_dir / "progress.gif").exists()


def test_read_only_folder_is_one_line(run_dir, capsys, monkeypatch):
    """On a read-only mount the writer fails and so does removing its temp file: the write's error
    is reported, once (root ignores chmod, so the file system's refusal is simulated)."""
    import errno
    from pathlib import Path

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(animate.animation.PillowWriter, "setup", refuse)
    monkeypatch.setattr(Path, "unlink", refuse)
    code, _, err = _cli(capsys, run_dir)
    assert code == 2 and err == f"error: cannot write {run_dir / 'progress.gif'}: Read-only file system (pick an --out you can write to)"
