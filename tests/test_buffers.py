"""fastgan.buffers.check_fit: the one memory check every backend runs before the data is on the
device (its estimate, bytes_per_run, is checked against a trainer's buffers in test_graph)."""

import pytest
import torch

from fastgan import buffers
from fastgan.buffers import ONE_SLOT, bytes_per_run, check_fit
from fastgan.errors import FastganError

CPU = torch.device("cpu")


def test_fewer_images_than_a_batch_is_one_line():
    with pytest.raises(FastganError, match=r"^the data has 100 images, fewer than one batch \(--batch-size 128\)"):
        check_fit(100, (1, 28, 28), 128, 100, CPU, eager=True)


def test_what_fits_passes_and_a_sweep_too_large_says_how_many_runs_fit(monkeypatch):
    per_run = bytes_per_run(128, 100, CPU, slots=ONE_SLOT)
    data = 4 * 60_000 * 784
    monkeypatch.setattr(buffers, "free_bytes", lambda device: (data + 10.5 * per_run) / 0.8)
    check_fit(60_000, (1, 28, 28), 128, 100, CPU, runs=10, eager=True)  # 10 fit, 11 do not
    with pytest.raises(FastganError, match=r"^11 runs at batch 128 need about .* at most 10 runs fit; sweep fewer"):
        check_fit(60_000, (1, 28, 28), 128, 100, CPU, runs=11, eager=True)


def test_a_model_too_big_for_the_memory_names_the_image_size(monkeypatch):
    monkeypatch.setattr(buffers, "free_bytes", lambda device: 2**30)
    with pytest.raises(FastganError, match=r"^256x256 RGB images need about [0-9.]+ GiB .* 1\.0 GiB is free on cpu: "
                                           r"lower --image-size"):
        check_fit(1000, (3, 256, 256), 128, 100, CPU, eager=True)


def test_the_eager_estimate_is_the_table_with_one_slot():
    """The eager step sums no partial gradients: its estimate is never above the Triton trainer's."""
    pytest.importorskip("triton", reason="the Triton trainer's slot counts need Triton")
    for batch in (8, 128, 1024):
        assert bytes_per_run(batch, 100, CPU, slots=ONE_SLOT) <= bytes_per_run(batch, 100, CPU)
