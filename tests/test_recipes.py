"""fastgan.recipes: the learning-rate schedule, a run's settings and the named recipes."""

import json

import pytest
import torch

from fastgan import checkpoint, train_cli
from fastgan.config import Config
from fastgan.recipes import RECIPES, SETTINGS, Hyper, lr_factor


def test_lr_factor_is_one_until_the_start_then_falls_to_zero_at_the_target():
    t = torch.arange(1, 12, dtype=torch.float64)  # steps 1..11; iterations 0..10 done before them
    assert torch.equal(lr_factor(t, "none", 0, 10), torch.ones(11, dtype=torch.float64))
    linear = lr_factor(t, "linear", 4, 10)
    assert torch.equal(linear[:5], torch.ones(5, dtype=torch.float64))  # steps 1..5 follow <= 4 iterations
    torch.testing.assert_close(linear[5:], torch.tensor([5, 4, 3, 2, 1, 0], dtype=torch.float64) / 6)
    cosine = lr_factor(t, "cosine", 4, 10)
    torch.testing.assert_close(cosine[4:], 0.5 * (1 + torch.cos(torch.pi * torch.arange(7) / 6)).double())
    assert linear[9] > 0 and cosine[9] > 0  # the run's last step (10) still moves


def test_hyper_of_a_config_and_each_nets_rate():
    h = Hyper.of(Config(iters=500, lr=2e-4, lr_g=1e-4, r1=3.0, lr_decay="linear", decay_start=100))
    assert (h.lr("D"), h.lr("G"), h.r1, h.target) == (2e-4, 1e-4, 3.0, 500)
    assert h.lrs("G", torch.tensor([500])).item() == pytest.approx(1e-4 / 400)
    assert Hyper.of(Config()) == Hyper()  # the seed's numbers


def test_recipes_name_known_settings_and_seed_is_the_default():
    assert set(RECIPES) == {"seed", "stable"}
    for values in RECIPES.values():
        assert set(values) <= set(SETTINGS)
    assert Config().with_recipe() == Config()


def test_a_flag_given_overrides_the_recipe_and_config_json_records_the_values(data_dir, tmp_path):
    out = tmp_path / "r"
    argv = ["--recipe", "stable", "--r1", "10", "--iters", "4", "--batch-size", "8", "--device", "cpu", "--backend",
            "eager", "--eval-every", "1000", "--ckpt-every", "2", "--data-dir", str(data_dir), "--out", str(out)]
    assert train_cli.main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["recipe"] == "stable" and saved["r1"] == 10.0 and saved["g_ema"] == RECIPES["stable"]["g_ema"]
    assert "ema" in checkpoint.load(out / "checkpoints" / "0000004.pt")  # the recipe's EMA is kept


def test_lazy_r1_gammas_and_their_flags():
    """Lazy R1 (--r1-every K): gamma K on D steps 1, 1 + K, ..., 0 between; K = 1 is gamma on
    every step, as float32 gamma (what the trainers read before the option existed); K < 1 or not
    whole is one line, as a flag and as a sweep key."""
    from fastgan import sweep
    from fastgan.errors import FastganError

    steps = torch.arange(1, 10)
    assert Hyper(r1=2.5, r1_every=4).r1_gammas(steps).tolist() == [10, 0, 0, 0, 10, 0, 0, 0, 10]
    assert torch.equal(Hyper(r1=0.1).r1_gammas(steps), torch.full((9,), 0.1, dtype=torch.float32))
    assert Hyper.of(Config(r1=1.0, r1_every=16)).r1_every == 16
    for bad in (0, -2, 1.5):
        with pytest.raises(FastganError, match="--r1-every must be a whole number of D steps >= 1"):
            Config(r1_every=bad, iters=10).validate()
    assert [r["r1_every"] for r in sweep.parse_sweep("r1_every=1,4")] == [1, 4]
    for spec, message in (("r1_every=0", "r1_every: 0 is out of range; a whole number of D steps is >= 1"),
                          ("r1_every=2.5", "'2.5' is not a whole number of D steps")):
        with pytest.raises(FastganError, match=message):
            sweep.parse_sweep(spec)
