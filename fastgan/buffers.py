"""The Triton trainer's device buffers: one table of their shapes (what GraphTrainer allocates),
the partial-sum slot counts its launch configs need, and what a run costs in device memory."""

import torch

from .kernels.d_grad import grad_partials as d_grad_partials
from .kernels.d_input_grad import input_grad_partials
from .kernels.linear_act import dw_partials, dx_partials, forward_partials
from .model import H_DIM, X_DIM, Z_DIM, nets


def grad_partials(batch, device, x_dim=X_DIM):
    """Per network, the gradient slots its split weight gradients need (kernels.linear_act's
    split-M backward, kernels.d_grad's row chunks): the largest split among its launches."""
    B, X = batch, x_dim
    return {
        "D": d_grad_partials(device, 2 * B, H_DIM, X),
        "G": max(dw_partials(device, B, X, H_DIM, "dx+dw"), dw_partials(device, B, H_DIM, Z_DIM, "dw")),
    }


def loss_partials(batch, device, x_dim=X_DIM):
    """The slots of the logged losses: the larger row split of D's gradients and D's input gradient."""
    return max(d_grad_partials(device, 2 * batch, H_DIM, x_dim), input_grad_partials(device, batch, H_DIM, x_dim))


def buffer_table(R, B, K, device, ema=False, r1=False, x_dim=X_DIM):
    """Every device buffer of a GraphTrainer of R runs at batch B replaying K iterations (with G's
    EMA weights, with the R1 penalty's gammas) for images of x_dim values, as (attribute, net or
    None, shape, dtype): `GraphTrainer.__init__` allocates exactly these and `bytes_per_run` sums
    them (the images are shared, not counted)."""
    f32, H, X = torch.float32, H_DIM, x_dim
    slots = grad_partials(B, device, X)
    table = []
    for net, shapes in nets(X).items():
        n = sum(torch.Size(s).numel() for s in shapes.values())
        table += [("flat", net, (R, n), f32),  # parameters, each run's contiguous
                  ("grad_flat", net, (slots[net], R, n), f32),  # split-M partial sums; Adam adds them in order
                  ("m_flat", net, (R, n), f32), ("v_flat", net, (R, n), f32)]  # Adam's moments
    # D1's 784-deep products in K chunks where the config says so: slots of raw sums that d_grad /
    # d_input_grad finish (bias, ReLU) where they read them; else D1 launches whole, into hD / hDg.
    pre, pre_g = (forward_partials(device, rows, H, X) for rows in (2 * B, B))
    table += [
        # (K, R, B) batch indices, each iteration's rows 16 bytes apart (R * B padded to even), so
        # D1's index pointer keeps one alignment: one specialization for every iteration.
        ("idx", None, (K, R * B + (R * B) % 2), torch.long),
        ("z", None, (K, R, 2 * B, Z_DIM), f32),  # rows [:B] of a run's slab: D step; [B:]: G step
        # Per iteration, net (D, G) and run [lr_t / (1 - b1^t), sqrt(1 - b2^t), 1 - b1, 1 - EMA beta
        # (G; else 0)]: rows of 16 bytes, so every iteration's rows are as aligned as the first: one
        # Adam specialization for all. lr_t: the net's learning rate at step t (its decay).
        ("hyper", None, (K, 2, R, 4), f32),
        # Per iteration, slot and run: shares of [d_loss, d_real, d_fake, g_loss] from d_grad's and
        # d_input_grad's row chunks (slots a launch does not split into stay zero); `losses`: their sum.
        ("log", None, (K, loss_partials(B, device, X), R, 4), f32),
        ("losses", None, (R, 4), f32),
        ("xx", None, (R, 2 * B, X), f32),  # per run [G(z_d); G(z_g)]; D1 reads the real rows in place
        ("hG", None, (R, 2 * B, H), f32),  # G1's output on [z_d; z_g]
        ("hD_pre", None, (pre, R, 2 * B, H), f32) if pre > 1 else ("hD", None, (R, 2 * B, H), f32),
        ("hDg_pre", None, (pre_g, R, B, H), f32) if pre_g > 1 else ("hDg", None, (R, B, H), f32),
        ("dfake", None, (R, B, X), f32),  # d G's loss / d G(z_g)
        ("dhG", None, (dx_partials(device, B, X, H), R, B, H), f32),  # G2's dx in N-chunk slots, G1 adds them
    ]
    if R > 1:
        table.append(("z_draw", None, (K, 2 * B, Z_DIM), f32))  # one run's noise, drawn contiguous, then placed
    if ema:
        table.append(("ema_flat", None, (R, sum(torch.Size(s).numel() for s in nets(X)["G"].values())), f32))
    if r1:
        table.append(("gamma", None, (R,), f32))  # each run's R1 gamma (0: off)
    return table


def bytes_per_run(batch, iters_per_replay, device="cpu", ema=True, r1=True, x_dim=X_DIM):
    """Device memory one run of a trainer holds: every buffer of `buffer_table` for one run
    (by default with the EMA and R1 buffers: the most a run can need)."""
    return sum(torch.Size(shape).numel() * dtype.itemsize
               for _, _, shape, dtype in buffer_table(1, batch, iters_per_replay, torch.device(device), ema, r1, x_dim))


def runs_that_fit(batch, iters_per_replay, free_bytes, headroom=0.8, device="cpu", x_dim=X_DIM):
    """How many runs fit in `free_bytes` of device memory, keeping 20% for the graph and torch."""
    return int(headroom * free_bytes // bytes_per_run(batch, iters_per_replay, device, x_dim=x_dim))
