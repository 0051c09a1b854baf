"""fastgan's fused Triton kernels.

Differentiable ops (autograd Functions with Triton backward):
    linear(x, w, b), linear_relu(x, w, b), linear_sigmoid(x, w, b), sigmoid_bce_with_logits(logits, target)
Plain launchers (preallocated outputs, no allocation or host sync; CUDA-graph capturable; each
takes one run's tensors or R runs' with a leading run axis, in one launch):
    linear_act_forward, linear_act_backward, sigmoid_bce_forward, sigmoid_bce_backward,
    d_grad (the D step: D's output layer, both losses and every gradient of D), d_input_grad
    (the G step's pass through D: G's loss and its gradient to D's input), adam_update (one
    launch per network)

On a CPU-only machine set TRITON_INTERPRET=1 before importing this package to run the
kernels in Triton's interpreter (slow; for tests).
"""

from types import SimpleNamespace

from ._checks import INTERPRETED
from ._compat import patch_interpreter

if INTERPRETED:
    patch_interpreter()  # before any launch: see kernels/_compat.py

from .adam import adam_terms, adam_update
from .d_grad import d_grad
from .d_input_grad import d_input_grad
from .linear_act import (
    ACT_NONE,
    ACT_RELU,
    ACT_SIGMOID,
    linear,
    linear_act_backward,
    linear_act_forward,
    linear_relu,
    linear_sigmoid,
)
from .sigmoid_bce import sigmoid_bce_backward, sigmoid_bce_forward, sigmoid_bce_with_logits

# The ops namespace fastgan.model's forward functions take (`--backend fused`).
OPS = SimpleNamespace(
    linear=linear,
    linear_relu=linear_relu,
    linear_sigmoid=linear_sigmoid,
    sigmoid_bce_with_logits=sigmoid_bce_with_logits,
)

__all__ = [
    "ACT_NONE", "ACT_RELU", "ACT_SIGMOID", "OPS",
    "linear", "linear_relu", "linear_sigmoid", "sigmoid_bce_with_logits",
    "linear_act_forward", "linear_act_backward", "sigmoid_bce_forward", "sigmoid_bce_backward",
    "d_grad", "d_input_grad", "adam_update", "adam_terms",
]
