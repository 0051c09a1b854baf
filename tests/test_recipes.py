"""fastgan.recipes: the learning-rate schedule, a run's settings and the named recipes."""

import json

import pytest
import torch

from fastgan import checkpoint, train_cli
from fastgan.config import Config
from fastgan.recipes import (
    DEFAULT_ITERS,
    MAX_EMA_REL,
    RECIPES,
    SEED_BATCH,
    SETTINGS,
    TRAINER_SETTINGS,
    Hyper,
    ema_exponent,
    lr_factor,
)


def test_lr_factor_is_one_until_the_start_then_falls_to_zero_at_the_target():
    t = torch.arange(1, 12, dtype=torch.float64)  # steps 1..11; iterations 0..10 done before them
    assert torch.equal(lr_factor(t, "none", 0, 10), torch.ones(11, dtype=torch.float64))
    linear = lr_factor(t, "linear", 4, 10)
    assert torch.equal(linear[:5], torch.ones(5, dtype=torch.float64))  # steps 1..5 follow <= 4 iterations
    torch.testing.assert_close(linear[5:], torch.tensor([5, 4, 3, 2, 1, 0], dtype=torch.float64) / 6)
    cosine = lr_factor(t, "cosine", 4, 10)
    torch.testing.assert_close(cosine[4:], 0.5 * (1 + torch.cos(torch.pi * torch.arange(7) / 6)).double())
    assert linear[9] > 0 and cosine[9] > 0  # the run's last step (10) still moves


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_a_decay_floor_ends_the_decay_at_that_fraction(decay):
    """floor + (1 - floor) x the decay's shape: 1 until the start, the floor at the target (and
    past it), the same steps as without a floor in between; floor 0 is the decay to 0, bitwise."""
    t = torch.arange(1, 14, dtype=torch.float64)  # steps 1..13: the target (10) and beyond it
    shape = lr_factor(t, decay, 4, 10)
    floored = lr_factor(t, decay, 4, 10, 0.25)
    assert torch.equal(floored[:5], torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(floored, 0.25 + 0.75 * shape, rtol=0, atol=1e-15)
    assert torch.equal(floored[10:], torch.full((3,), 0.25, dtype=torch.float64))
    assert torch.equal(lr_factor(t, decay, 4, 10, 0.0), shape)
    assert torch.equal(lr_factor(t, decay, 4, 10, 1.0), torch.ones(13, dtype=torch.float64))  # floor 1: no decay


def test_hyper_of_a_config_and_each_nets_rate():
    h = Hyper.of(Config(iters=500, lr=2e-4, lr_g=1e-4, r1=3.0, lr_decay="linear", decay_start=100))
    assert (h.lr("D"), h.lr("G"), h.r1, h.target) == (2e-4, 1e-4, 3.0, 500)
    assert h.lrs("G", torch.tensor([500])).item() == pytest.approx(1e-4 / 400)
    floored = Hyper.of(Config(iters=500, lr=2e-4, lr_decay="linear", decay_start=100, decay_floor=0.5))
    assert floored.decay_floor == 0.5
    assert floored.lrs("D", torch.tensor([500])).item() == pytest.approx(2e-4 * (0.5 + 0.5 / 400))
    assert Hyper.of(Config()) == Hyper()  # the seed's numbers


def test_recipes_name_known_settings_and_seed_is_the_default():
    assert set(RECIPES) == {"seed", "stable"}
    for values in RECIPES.values():
        assert set(values) <= set(SETTINGS) | set(TRAINER_SETTINGS)
    assert Config().with_recipe() == Config()
    assert Hyper.recipe("seed") == Hyper()
    stable = Hyper.recipe("stable")
    assert all(getattr(stable, k) == v for k, v in RECIPES["stable"].items() if k not in ("lr", *TRAINER_SETTINGS))
    assert (stable.lr_d, stable.lr_g, stable.lr_decay, stable.decay_start, stable.decay_floor) == (
        3e-3, 2e-3, "linear", 500_000, 0.2)
    # the last step's rate: the floor, to within the decay's one-step slope (0.8 / 500,000 of the rate)
    assert stable.lrs("D", torch.tensor([DEFAULT_ITERS])).item() == pytest.approx(0.2 * 3e-3, rel=1e-5)
    assert Hyper.of(Config(recipe="stable", iters=DEFAULT_ITERS).with_recipe()) == stable


def test_the_stable_recipe_trains_at_batch_256_unless_a_batch_size_is_given(data_dir, tmp_path):
    """The recipe names the trainer's batch (the seed's 128, stable's 256); --batch-size given
    overrides it, a sweep's runs share it, and a run resumed keeps its own (one started at
    another batch, e.g. before the recipe named one, goes on at that batch)."""
    from fastgan import sweep

    def cfg(*flags):
        return train_cli.parse_args([*flags, "--iters", "10"]).with_recipe().validate()

    assert (cfg().batch_size, cfg("--recipe", "seed").batch_size, Config().batch_size) == (SEED_BATCH,) * 3 == (128,) * 3
    assert cfg("--recipe", "stable").batch_size == 256
    assert cfg("--recipe", "stable", "--batch-size", "128").batch_size == 128  # its fifth form
    assert cfg("--recipe", "seed", "--batch-size", "256").batch_size == 256
    stable = cfg("--recipe", "stable")
    assert [Config(**{**stable.to_dict(), **s}).batch_size for _, s in sweep.expand(stable, sweep.parse_sweep("seed=0,1"))] == [256, 256]
    assert Hyper.recipe("stable") == Hyper.of(train_cli.parse_args(["--recipe", "stable"]).with_recipe())  # no batch in Hyper

    out = tmp_path / "r"
    common = ["--device", "cpu", "--backend", "eager", "--eval-every", "1000", "--data-dir", str(data_dir)]
    assert train_cli.main(["--recipe", "stable", "--batch-size", "8", "--iters", "2", "--out", str(out), *common]) == 0
    assert train_cli.main(["--resume", str(out), "--iters", "4", *common]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["recipe"], saved["batch_size"], saved["iters"]) == ("stable", 8, 4)


def test_the_stable_recipes_decay_is_off_in_a_run_that_ends_before_it_starts():
    """Its decay starts at 500,000: a 1,000,000-iteration run decays over its second half, a
    run of 500,000 or fewer keeps the recipe's rate (decay none); --decay-start or --lr-decay
    given is taken as is; without a decay, each network keeps the recipe's rate."""
    def resolved(*flags):
        return train_cli.parse_args(["--recipe", "stable", *flags]).with_recipe().validate()

    full = train_cli.parse_args(["--recipe", "stable"]).with_recipe()  # the default target
    assert (full.lr_decay, full.decay_start, full.decay_floor) == ("linear", 500_000, 0.2)
    assert resolved("--iters", "30000").decay_floor == 0  # the floor goes with the decay
    assert train_cli.parse_args(["--recipe", "stable", "--decay-floor", "0"]).with_recipe().decay_floor == 0  # its fourth form
    assert (resolved("--iters", "500001").lr_decay, resolved("--iters", "500000").lr_decay) == ("linear", "none")
    assert (resolved("--iters", "30000").lr_decay, resolved("--iters", "30000").decay_start) == ("none", 0)
    assert resolved("--iters", "30000", "--decay-floor", "0.2").lr_decay == "none"  # a floor alone starts no decay
    assert resolved("--iters", "30000", "--decay-start", "20000").lr_decay == "linear"
    assert resolved("--iters", "30000", "--lr-decay", "cosine", "--decay-start", "20000").lr_decay == "cosine"
    assert Hyper.recipe("stable", target=30000) == Hyper.of(resolved("--iters", "30000"))
    assert Hyper.recipe("stable", target=30000).lrs("G", torch.tensor([30000])).item() == 2e-3  # no decay
    assert Hyper.recipe("stable", target=30000).lrs("D", torch.tensor([30000])).item() == 3e-3


def test_a_given_lr_is_both_networks_rate_and_a_given_net_rate_that_nets_only():
    """The stable recipe names D's rate (3e-3) beside lr (G's, 2e-3). --lr given replaces both;
    --lr-d or --lr-g given replaces that network's only; as flags and as sweep keys."""
    from fastgan import sweep

    def rates(*flags, spec=None):
        cfg = train_cli.parse_args(["--recipe", "stable", *flags, "--iters", "10"]).with_recipe().validate()
        if spec is None:
            return cfg.lr_d_or_lr(), cfg.lr_g_or_lr()
        runs = [Config(**{**cfg.to_dict(), **s}) for _, s in sweep.expand(cfg, sweep.parse_sweep(spec))]
        return [(run.lr_d_or_lr(), run.lr_g_or_lr()) for run in runs]

    assert rates() == (3e-3, 2e-3)
    assert rates("--lr", "1e-3") == (1e-3, 1e-3)
    assert rates("--lr-d", "1e-3") == (1e-3, 2e-3)
    assert rates("--lr-g", "1e-3") == (3e-3, 1e-3)
    assert rates("--lr", "1e-3", "--lr-d", "5e-3") == (5e-3, 1e-3)
    assert rates(spec="lr=1e-3,4e-3") == [(1e-3, 1e-3), (4e-3, 4e-3)]
    assert rates(spec="lr_g=1e-3") == [(3e-3, 1e-3)]
    assert rates("--lr-d", "5e-3", spec="lr=1e-3") == [(5e-3, 1e-3)]
    assert rates(spec="lr=1e-3 lr_d=4e-3") == [(4e-3, 1e-3)]
    assert Hyper.recipe("seed") == Hyper()  # the seed recipe names no net's rate


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


def test_power_ema_exponent_and_weights():
    """--g-ema-rel: EDM2's power-function EMA. Its exponent g gives the asked-for relative width
    sqrt((g + 1) / ((g + 2)^2 (g + 3))) (Karras et al. 2024, eq. 3; their 0.05 and 0.10 are g =
    16.97 and 6.94); its weight 1 - beta = 1 - (1 - 1/t)^(g + 1) is 1 at the first step, falls
    with every step, and is (g + 1) / t to first order (t = 1e6: within 1e-5 relative); a fixed
    beta's weight is 1 - beta at every step, float32 as the trainers read it; none: 0."""
    for sigma, want in ((0.05, 16.97), (0.10, 6.94)):
        g = ema_exponent(sigma)
        assert g == pytest.approx(want, abs=0.01)
        assert ((g + 1) / ((g + 2) ** 2 * (g + 3))) ** 0.5 == pytest.approx(sigma, rel=1e-12)
    assert ema_exponent(MAX_EMA_REL) > 0
    steps = torch.arange(1, 2001)
    w = Hyper(g_ema_rel=0.05).ema_weights(steps)
    assert w.dtype == torch.float32 and w[0] == 1.0 and bool((w[2:] < w[1:-1]).all())  # w[1] rounds to 1 too
    g = ema_exponent(0.05)
    big = Hyper(g_ema_rel=0.05).ema_weights(torch.tensor([1_000_000])).double()
    assert big.item() * 1e6 / (g + 1) == pytest.approx(1.0, rel=1e-5)
    assert torch.equal(Hyper(g_ema=0.999).ema_weights(steps[:3]), torch.full((3,), 1 - 0.999).float())
    assert torch.equal(Hyper().ema_weights(steps[:3]), torch.zeros(3))
    assert Hyper(g_ema_rel=0.05).keeps_ema and Hyper(g_ema=0.9).keeps_ema and not Hyper().keeps_ema


def test_an_ema_flag_replaces_the_recipes_other_kind():
    """--g-ema-rel with --recipe stable replaces a fixed EMA the recipe has, --g-ema a growing one
    (a flag given overrides the recipe); both given, or --g-ema-rel out of range, is one line, as
    flags and as sweep keys; a sweep key replaces the recipe's other kind as a flag does."""
    from fastgan import sweep
    from fastgan.errors import FastganError

    def resolved(*flags):
        return train_cli.parse_args(["--recipe", "stable", *flags, "--iters", "10"]).with_recipe().validate()

    cfg = resolved("--g-ema-rel", "0.05")
    assert (cfg.g_ema, cfg.g_ema_rel, cfg.r1) == (0.0, 0.05, RECIPES["stable"]["r1"])
    assert Hyper.of(cfg).keeps_ema and Hyper.of(cfg).g_ema == 0.0
    cfg = resolved("--g-ema", "0.999")
    assert (cfg.g_ema, cfg.g_ema_rel) == (0.999, 0.0)
    off = resolved("--g-ema", "0", "--g-ema-rel", "0")
    assert (off.g_ema, off.g_ema_rel) == (0, 0) and not Hyper.of(off).keeps_ema
    with pytest.raises(FastganError, match="--g-ema 0.99 and --g-ema-rel 0.05 are two EMAs of G; keep one"):
        resolved("--g-ema", "0.99", "--g-ema-rel", "0.05")
    for bad in ("0.3", "-0.1", "nan"):
        with pytest.raises(FastganError, match=r"--g-ema-rel must be in \[0, 0.28\]"):
            resolved("--g-ema-rel", bad)
    stable = train_cli.parse_args(["--recipe", "stable"]).with_recipe()
    runs = [s for _, s in sweep.expand(stable, sweep.parse_sweep("seed=0 g_ema_rel=0.05"))]
    assert [(r["g_ema"], r["g_ema_rel"]) for r in runs] == [(0.0, 0.05)]
    runs = [s for _, s in sweep.expand(stable, sweep.parse_sweep("seed=0 g_ema=0.999"))]
    assert [(r["g_ema"], r["g_ema_rel"]) for r in runs] == [(0.999, 0.0)]
    with pytest.raises(FastganError, match="g_ema_rel: 0.5 is out of range; an EMA's sigma_rel must be in"):
        sweep.parse_sweep("g_ema_rel=0.5")
    with pytest.raises(FastganError, match="a run has g_ema 0.9 and g_ema_rel 0.05: two EMAs of G"):
        sweep.expand(Config(), sweep.parse_sweep("g_ema=0.9 g_ema_rel=0.05"))
