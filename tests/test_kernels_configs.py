"""kernels.configs: the launch-configuration tables, their lookup, and every configuration they
hold checked against float64 under the interpreter (the compile test checks the same tables'
launches compile for sm_90/sm_80 without spills).

Tolerances as in test_kernels_linear_act (IEEE fp32 sums: 2e-5 normwise relative).
"""

import json
import math

import pytest
import reference
import torch
from conftest import DEVICES
from fastgan.kernels import (
    ACT_RELU,
    ACT_SIGMOID,
    adam_terms,
    adam_update,
    configs,
    d_grad,
    d_input_grad,
    linear_act_backward,
    linear_act_forward,
)
from fastgan.kernels.d_grad import grad_partials as d_grad_partials
from fastgan.kernels.d_input_grad import input_grad_partials
from fastgan.kernels.linear_act import backward_config, dw_partials, dx_partials, forward_partials
from helpers import rel_err

TABLES = sorted(configs.TABLE_DIR.glob("*.json"))
ENTRIES = [(path.name, i, e) for path in TABLES for i, e in enumerate(configs.load(path))]
TOL = 2e-5


def _ids(case):
    name, i, e = case
    return f"{name}:{i}:{e['kernel']}"


def test_default_table_ends_each_kernel_with_a_catch_all():
    default = configs.load(configs.DEFAULT_FILE)
    for kernel in configs.KERNELS:
        last = [e for e in default if e["kernel"] == kernel][-1]
        assert set(last) == {"kernel", "config"}, f"{kernel}'s last default entry must match every shape: {last}"


def test_first_matching_entry_wins_and_blocks_are_clamped():
    cpu = torch.device("cpu")
    table = [{"kernel": "linear_act_fwd", "max_M": 64, "K": 784, "config": {"BLOCK_M": 16, "BLOCK_N": 128,
                                                                           "BLOCK_K": 64, "SPLIT_K": 1, "num_warps": 2,
                                                                           "num_stages": 2}}]
    with configs.use(table):
        assert configs.lookup("linear_act_fwd", cpu, M=64, N=128, K=784)["num_warps"] == 2
        assert configs.lookup("linear_act_fwd", cpu, M=65, N=128, K=784) == configs.lookup(
            "linear_act_fwd", torch.device("meta"), M=65, N=128, K=784)  # past max_M: the default's
        assert configs.lookup("linear_act_fwd", cpu, M=8, N=128, K=100)["num_warps"] == 4  # other K
    assert configs.block(64, 1) == 16 and configs.block(64, 33) == 64 and configs.block(32, 784) == 32
    cfg = backward_config(cpu, 1, 784, 128, "dx+dw")
    assert cfg["DX_BLOCK_M"] == 16 and cfg["SPLIT_M"] == 1  # one row: one chunk, blocks shrunk to 16


def test_device_tables_are_named_by_the_device():
    assert configs.device_file("NVIDIA H100 80GB HBM3").name == "nvidia-h100-80gb-hbm3.json"
    assert configs.device_file("NVIDIA H200").parent == configs.TABLE_DIR


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read it"),
    ('{"entries": 3}', "expected a list of entries"),
    ('[{"kernel": "conv", "config": {}}]', "entry 0 needs a kernel from"),
    ('[{"kernel": "adam", "config": {"BLOCK": 256, "num_warps": 4}, "max_m": 3}]', r"entry 0 has unknown keys \['max_m'\]"),
    ('[{"kernel": "adam", "config": {"BLOCK": 256}}]', r"entry 0 \(adam\) config lacks \['num_warps'\] and has unknown \[\]"),
    ('[{"kernel": "adam", "config": {"BLOCK": 16, "num_warps": 4, "BLOKC": 2}}]',
     r"lacks \[\] and has unknown \['BLOKC'\]"),
])
def test_bad_tables_fail_in_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        configs.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_tuner_tables_with_measurements_load():
    """The tuner's file format: entries with their measured times beside the config."""
    entries = configs.check([{"kernel": "adam", "max_M": 10, "config": {"BLOCK": 512, "num_warps": 4},
                              "us": {"1": 3.1}, "default_us": {"1": 3.3}, "runs": [1]}])
    assert entries == [{"kernel": "adam", "max_M": 10, "config": {"BLOCK": 512, "num_warps": 4}}]


# --- every configuration of every table, against float64 ---------------------------------------


def _catch_all(entry):
    return [{"kernel": entry["kernel"], "config": entry["config"]}]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", [c for c in ENTRIES if c[2]["kernel"] == "linear_act_fwd"], ids=_ids)
def test_every_forward_config_matches_float64(device, case):
    """At a shape larger than the config's blocks on every axis (K split into the config's chunks,
    each non-empty, raw slots summed here), with gathered rows."""
    _, _, entry = case
    c = entry["config"]
    M, K, N = c["BLOCK_M"] + 5, c["BLOCK_K"] * c["SPLIT_K"] + 3, c["BLOCK_N"] + 7
    images, x = torch.rand(40, K, device=device), torch.rand(M - 4, K, device=device)
    idx = torch.randint(0, 40, (4,), device=device)
    w, b = torch.randn(K, N, device=device) / math.sqrt(K / 2), torch.randn(N, device=device) * 0.1
    want = torch.sigmoid(torch.cat([images[idx], x]).double() @ w.double() + b.double())
    y = torch.full((M, N), float("nan"), device=device)
    with configs.use(_catch_all(entry)):
        linear_act_forward(x, w, b, y, ACT_SIGMOID, rows=(images, idx))
        slots = forward_partials(torch.device(device), M, N, K)
        assert slots == c["SPLIT_K"]
        raw = torch.full((slots, M, N), float("nan"), device=device)
        linear_act_forward(x, w, b, raw, ACT_SIGMOID, rows=(images, idx), partials=True)
    assert rel_err(y, want) < TOL
    assert rel_err(torch.sigmoid(raw.double().sum(0) + b.double()), want) < TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", [c for c in ENTRIES if c[2]["kernel"] == "linear_act_bwd"], ids=_ids)
def test_every_backward_config_matches_float64(device, case):
    """Split-N dx and split-M dw/db partials (every chunk non-empty) at a shape larger than the blocks."""
    _, _, entry = case
    c = entry["config"]
    M = max(c["DX_BLOCK_M"], c["DW_BLOCK_M"] * c["SPLIT_M"]) + 3
    K = max(c["DX_BLOCK_K"], c["DW_BLOCK_K"]) + 3
    N = max(c["DX_BLOCK_N"] * c["SPLIT_N"], c["DW_BLOCK_N"]) + 5
    x = torch.rand(M, K, device=device).requires_grad_()
    w = (torch.randn(K, N, device=device) / math.sqrt(K / 2)).requires_grad_()
    b = (torch.randn(N, device=device) * 0.1).requires_grad_()
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    yd = torch.relu(xd @ wd + bd)
    dy = torch.randn(M, N, device=device)
    yd.backward(dy.double())
    y = yd.detach().float()
    with configs.use(_catch_all(entry)):
        slots = dw_partials(torch.device(device), M, N, K, "dx+dw")
        assert slots == c["SPLIT_M"] and dx_partials(torch.device(device), M, N, K, "dx+dw") == c["SPLIT_N"]
        dx = torch.full((c["SPLIT_N"], M, K), float("nan"), device=device)
        dw, db = torch.zeros(slots, K, N, device=device), torch.zeros(slots, N, device=device)
        linear_act_backward(x.detach(), w.detach(), y, dy, dx, dw, db, ACT_RELU, partials=True)
    assert rel_err(dx.sum(0), xd.grad) < TOL
    assert rel_err(dw.sum(0), wd.grad) < TOL
    terms = (dy.double() * (yd > 0)).abs().sum(0)  # db is a sum that can cancel: its bound (test_kernels_linear_act)
    assert ((db.sum(0).double() - bd.grad).norm() / terms.norm()).item() < TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", [c for c in ENTRIES if c[2]["kernel"] == "d_grad"], ids=_ids)
def test_every_d_grad_config_matches_float64(device, case):
    """Rows split into the config's chunks (each non-empty), dW1 taller than one tile, D1
    finished from 2 slots, the real rows gathered; against reference.d_step."""
    _, _, entry = case
    c = entry["config"]
    M, H, K = c["BLOCK_M"] * (c["SPLIT"] + 1) + 3, 128, c["BLOCK_K"] + 9
    images, idx = torch.rand(60, K, device=device), torch.randint(0, 60, (M // 2,), device=device)
    x = torch.cat([images[idx], torch.rand(M - M // 2, K, device=device)])
    w1, b1 = torch.randn(K, H, device=device) / math.sqrt(K / 2), torch.randn(H, device=device) * 0.1
    w2, b2 = torch.randn(H, 1, device=device) / math.sqrt(H / 2), torch.randn(1, device=device)
    pre = torch.stack([x[:, : K // 2] @ w1[: K // 2], x[:, K // 2:] @ w1[K // 2:]])
    with configs.use(_catch_all(entry)):
        slots = d_grad_partials(torch.device(device), M, H, K)
        assert slots == c["SPLIT"]
        out = [torch.zeros(slots, *s, device=device) for s in ((3,), (K, H), (H,), (H, 1), (1,))]
        d_grad(x[M // 2:], w2, b2, *out, split=M // 2, pre=(pre, b1), rows=(images, idx))
    losses, dw1, db1, dw2, db2 = (t.sum(0).double() for t in out)
    want = reference.d_step(x, torch.relu(pre[0] + pre[1] + b1), w2, b2, M // 2)
    assert rel_err(losses[0], want["losses"][0]) < TOL
    for got, name in ((dw1, "dw1"), (dw2, "dw2")):
        assert rel_err(got, want[name]) < TOL
    for got, name in ((db1, "db1"), (db2, "db2")):  # sums that can cancel: see test_kernels_linear_act
        assert ((got - want[name]).norm() / want[f"{name}_terms"].norm()).item() < TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", [c for c in ENTRIES if c[2]["kernel"] == "d_input_grad"], ids=_ids)
def test_every_d_input_grad_config_matches_float64(device, case):
    """Rows split into the config's chunks (each non-empty, several row blocks in the last), dx
    wider than one column tile, D1 finished from 2 slots; against reference.d_input."""
    _, _, entry = case
    c = entry["config"]
    M, H, K = c["BLOCK_M"] * (c["SPLIT"] + 1) + 3, 128, c["BLOCK_K"] + 9
    x = torch.rand(M, K, device=device)
    w1, b1 = torch.randn(K, H, device=device) / math.sqrt(K / 2), torch.randn(H, device=device) * 0.1
    w2, b2 = torch.randn(H, 1, device=device) / math.sqrt(H / 2), torch.randn(1, device=device)
    pre = torch.stack([x[:, : K // 2] @ w1[: K // 2], x[:, K // 2:] @ w1[K // 2:]])
    dx = torch.full((M, K), float("nan"), device=device)
    with configs.use(_catch_all(entry)):
        slots = input_grad_partials(torch.device(device), M, H, K)
        assert slots == c["SPLIT"]
        losses = torch.zeros(slots, 1, device=device)
        d_input_grad(None, w1, w2, b2, losses, dx, pre=(pre, b1))
    loss, want = reference.d_input(torch.relu(pre[0] + pre[1] + b1), w1, w2, b2, 1.0)
    assert rel_err(losses.sum(), loss) < 1e-5
    assert rel_err(dx, want) < TOL


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", [c for c in ENTRIES if c[2]["kernel"] == "adam"], ids=_ids)
def test_every_adam_config_matches_torch(device, case):
    """Over more than two blocks; tolerance as in test_kernels_adam."""
    _, _, entry = case
    n = 2 * entry["config"]["BLOCK"] + 5
    p = torch.randn(n, device=device)
    ref = p.clone().requires_grad_()
    opt = torch.optim.Adam([ref], lr=1e-3)
    m, v = torch.zeros(n, device=device), torch.zeros(n, device=device)
    ref.grad = torch.randn(n, device=device)
    opt.step()
    with configs.use(_catch_all(entry)):
        adam_update(p, ref.grad, m, v, adam_terms(torch.tensor([1]), 1e-3, 0.9, 0.999).float().to(device)[0, 0], 0.999, 1e-8)
    torch.testing.assert_close(p, ref.detach(), rtol=1e-6, atol=1e-6)


def test_every_table_entry_is_covered():
    """Every entry of every table, and every kernel the tables serve, is the case of a parity test
    in this module (read from their parametrize marks: an entry of a kernel without one fails)."""
    marks = [m for fn in globals().values() if callable(fn) for m in getattr(fn, "pytestmark", [])]
    tested = {(name, i) for m in marks if m.name == "parametrize" and m.args[0] == "case" for name, i, _ in m.args[1]}
    assert {(name, i) for name, i, _ in ENTRIES} <= tested
    assert {e["kernel"] for _, _, e in ENTRIES} == set(configs.KERNELS)
    assert json.loads(configs.DEFAULT_FILE.read_text())["entries"]
