"""Each fused kernel against torch's eager equivalent at the GAN's shapes (batch 128; 16 on a CPU),
forward and backward, through the plain launchers (preallocated outputs).

extra_info.us_per_call is the median time of one call. On a GPU a round is 200 back-to-back
calls and a synchronize (launch-bound at these sizes, as in training); on the CPU the Triton
side runs in the interpreter and says nothing about GPU speed, it only checks the bench runs.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from .conftest import DEVICE, HAS_CUDA, environment, sync

from fastgan import kernels  # noqa: E402  (after conftest has set TRITON_INTERPRET on CPU)
from fastgan.kernels import ACT_NONE, ACT_RELU, ACT_SIGMOID

BATCH = 128 if HAS_CUDA else 16  # the interpreter's time grows with the programs: a CPU only checks the bench runs
# name: (K, N, activation) of the GAN's four layers
LAYERS = {
    "G1_relu_100x128": (100, 128, ACT_RELU),
    "G2_sigmoid_128x784": (128, 784, ACT_SIGMOID),
    "D1_relu_784x128": (784, 128, ACT_RELU),
    "D2_logit_128x1": (128, 1, ACT_NONE),
}
TORCH_ACT = {ACT_NONE: lambda t: t, ACT_RELU: torch.relu, ACT_SIGMOID: torch.sigmoid}
CALLS = 200 if HAS_CUDA else 1


def _layer(K, N, act):
    x = torch.rand(BATCH, K, device=DEVICE)
    w = torch.randn(K, N, device=DEVICE) / math.sqrt(K / 2)
    b = torch.zeros(N, device=DEVICE)
    y = torch.empty(BATCH, N, device=DEVICE)
    kernels.linear_act_forward(x, w, b, y, act)
    dy = torch.randn(BATCH, N, device=DEVICE)
    grads = (torch.empty(BATCH, K, device=DEVICE), torch.empty(K, N, device=DEVICE), torch.empty(N, device=DEVICE))
    return x, w, b, y, dy, grads


def _torch_backward(x, w, y, dy, act):
    if act == ACT_RELU:
        g = dy * (y > 0)
    elif act == ACT_SIGMOID:
        g = dy * y * (1 - y)
    else:
        g = dy
    return g @ w.t(), x.t() @ g, g.sum(0)


def _bench(benchmark, fn, **info):
    def timed():
        for _ in range(CALLS):
            fn()
        sync()

    fn()
    sync()
    benchmark.pedantic(timed, rounds=20 if HAS_CUDA else 2, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(environment())
    benchmark.extra_info.update(info, calls_per_round=CALLS)
    if benchmark.stats is not None:
        benchmark.extra_info["us_per_call"] = 1e6 * benchmark.stats.stats.median / CALLS


@pytest.mark.parametrize("impl", ["triton", "torch"])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_linear_forward(benchmark, layer, impl):
    K, N, act = LAYERS[layer]
    x, w, b, y, _, _ = _layer(K, N, act)
    if impl == "triton":
        fn = lambda: kernels.linear_act_forward(x, w, b, y, act)  # noqa: E731
    else:
        fn = lambda: TORCH_ACT[act](torch.addmm(b, x, w))  # noqa: E731
    _bench(benchmark, fn, op="linear_act_forward", layer=layer, impl=impl)


@pytest.mark.parametrize("impl", ["triton", "torch"])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_linear_backward(benchmark, layer, impl):
    K, N, act = LAYERS[layer]
    x, w, b, y, dy, (dx, dw, db) = _layer(K, N, act)
    if impl == "triton":
        fn = lambda: kernels.linear_act_backward(x, w, y, dy, dx, dw, db, act)  # noqa: E731
    else:
        fn = lambda: _torch_backward(x, w, y, dy, act)  # noqa: E731
    _bench(benchmark, fn, op="linear_act_backward", layer=layer, impl=impl)


@pytest.mark.parametrize("impl", ["triton", "torch"])
def test_sigmoid_bce(benchmark, impl):
    logits = torch.randn(BATCH, 1, device=DEVICE) * 3
    loss, dlogits = torch.empty(1, device=DEVICE), torch.empty_like(logits)
    target = torch.ones_like(logits)
    if impl == "triton":
        fn = lambda: kernels.sigmoid_bce_forward(logits, None, 1.0, loss, dlogits)  # noqa: E731
    else:
        def fn():
            return F.binary_cross_entropy_with_logits(logits, target), (torch.sigmoid(logits) - target) / BATCH
    _bench(benchmark, fn, op="sigmoid_bce_forward_with_grad", layer="D_out_128", impl=impl)
