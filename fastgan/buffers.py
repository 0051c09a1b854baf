"""The Triton trainer's device buffers: one table of their shapes (what GraphTrainer allocates),
the partial-sum slot counts its launch configs need, and what a run costs in memory: the one
estimate every backend's memory check uses (`check_fit`)."""

import math

import torch

from .errors import FastganError
from .images import host_free_bytes
from .model import H_DIM, X_DIM, Z_DIM, nets

# The eager step sums no partial gradients: its memory is the table's with one slot everywhere
# (parameters, Adam's moments, gradients, a batch's activations, as the Triton trainer's).
ONE_SLOT = {"D": 1, "G": 1, "log": 1, "pre": 1, "pre_g": 1, "dhG": 1}


def partials(batch, device, x_dim=X_DIM, h_dim=H_DIM, classes=0):
    """The slots of the split sums the launch configs need at this batch and image size:
    per network its gradient slots (kernels.linear_act's split-M backward, kernels.d_grad's
    row chunks: the largest split among its launches), the logged losses' (the larger row split
    of D's gradients and D's input gradient), D1's K chunks on [real; fake] and on G's fakes
    (pre, pre_g), and G2's dx N chunks (dhG)."""
    from .kernels.d_grad import grad_partials as d_grad_partials  # here: Triton only for these backends
    from .kernels.d_input_grad import input_grad_partials
    from .kernels.linear_act import dw_partials, dx_partials, forward_partials

    B, X, H, XD = batch, x_dim, h_dim, x_dim + classes  # XD: D's inputs (with a conditional model's label columns)
    return {
        "D": d_grad_partials(device, 2 * B, H, XD),
        "G": max(dw_partials(device, B, X, H, "dx+dw"), dw_partials(device, B, H, Z_DIM + classes, "dw")),
        "log": max(d_grad_partials(device, 2 * B, H, XD), input_grad_partials(device, B, H, XD)),
        "pre": forward_partials(device, 2 * B, H, XD),
        "pre_g": forward_partials(device, B, H, XD),
        "dhG": dx_partials(device, B, X, H),
    }


def buffer_table(R, B, K, device, ema=False, r1=False, x_dim=X_DIM, slots=None, h_dim=H_DIM, classes=0):
    """Every device buffer of a GraphTrainer of R runs at batch B replaying K iterations (with G's
    EMA weights, with the R1 penalty's gammas) for images of x_dim values, hidden layers h_dim
    wide and `classes` label columns (a conditional model), as (attribute, net or
    None, shape, dtype): `GraphTrainer.__init__` allocates exactly these and `bytes_per_run` sums
    them (the images are shared, not counted). `slots`: `partials`' (default) or ONE_SLOT."""
    f32, H, X, C = torch.float32, h_dim, x_dim, classes
    slots = slots or partials(B, device, X, H, C)
    table = []
    for net, shapes in nets(X, H, C).items():
        n = sum(torch.Size(s).numel() for s in shapes.values())
        table += [("flat", net, (R, n), f32),  # parameters, each run's contiguous
                  ("grad_flat", net, (slots[net], R, n), f32),  # split-M partial sums; Adam adds them in order
                  ("m_flat", net, (R, n), f32), ("v_flat", net, (R, n), f32)]  # Adam's moments
    # D1's 784-deep products in K chunks where the config says so: slots of raw sums that d_grad /
    # d_input_grad finish (bias, ReLU) where they read them; else D1 launches whole, into hD / hDg.
    pre, pre_g = slots["pre"], slots["pre_g"]
    table += [
        # (K, R, B) batch indices, each iteration's rows 16 bytes apart (R * B padded to even), so
        # D1's index pointer keeps one alignment: one specialization for every iteration.
        ("idx", None, (K, R * B + (R * B) % 2), torch.long),
        ("z", None, (K, R, 2 * B, Z_DIM + C), f32),  # rows [:B] of a run's slab: D step; [B:]: G step; labels last
        # Per iteration, net (D, G) and run [lr_t / (1 - b1^t), sqrt(1 - b2^t), 1 - b1, 1 - EMA beta
        # (G; else 0)]: rows of 16 bytes, so every iteration's rows are as aligned as the first: one
        # Adam specialization for all. lr_t: the net's learning rate at step t (its decay).
        ("hyper", None, (K, 2, R, 4), f32),
        # Per iteration, slot and run: shares of [d_loss, d_real, d_fake, g_loss] from d_grad's and
        # d_input_grad's row chunks (slots a launch does not split into stay zero); `losses`: their sum.
        ("log", None, (K, slots["log"], R, 4), f32),
        ("losses", None, (R, 4), f32),
        ("xx", None, (R, 2 * B, X), f32),  # per run [G(z_d); G(z_g)]; D1 reads the real rows in place
        ("hG", None, (R, 2 * B, H), f32),  # G1's output on [z_d; z_g]
        ("hD_pre", None, (pre, R, 2 * B, H), f32) if pre > 1 else ("hD", None, (R, 2 * B, H), f32),
        ("hDg_pre", None, (pre_g, R, B, H), f32) if pre_g > 1 else ("hDg", None, (R, B, H), f32),
        ("dfake", None, (R, B, X + C), f32),  # d G's loss / d G(z_g) (and, unused, its label columns)
        ("dhG", None, (slots["dhG"], R, B, H), f32),  # G2's dx in N-chunk slots, G1 adds them
    ]
    if C:  # D's input for G's samples: xx with each sample's one-hot label columns after it
        table.append(("xd", None, (R, 2 * B, X + C), f32))
    if R > 1:
        table.append(("z_draw", None, (K, 2 * B, Z_DIM + C), f32))  # one run's noise, drawn contiguous, then placed
    if ema:
        table.append(("ema_flat", None, (R, sum(torch.Size(s).numel() for s in nets(X, H, C)["G"].values())), f32))
    if r1:
        # Per iteration and run, the D step's R1 gamma (0: none that step; lazy R1: gamma k every k-th),
        # rows padded to 16 bytes like hyper's: one specialization of d_grad for every iteration.
        table.append(("gamma", None, (K, R + (-R) % 4), f32))
    return table


def flat_views(flat, shapes):
    """name -> view of `flat` (..., n) as (..., *shape), each run's part contiguous."""
    views, offset = {}, 0
    for name, shape in shapes.items():
        n = torch.Size(shape).numel()
        views[name] = flat[..., offset : offset + n].view(*flat.shape[:-1], *shape)
        offset += n
    return views


def bytes_per_run(batch, iters_per_replay, device="cpu", ema=True, r1=True, x_dim=X_DIM, slots=None, h_dim=H_DIM,
                  classes=0):
    """Device memory one run of a trainer holds: every buffer of `buffer_table` for one run
    (by default with the EMA and R1 buffers: the most a run can need)."""
    return sum(torch.Size(shape).numel() * dtype.itemsize for _, _, shape, dtype in
               buffer_table(1, batch, iters_per_replay, torch.device(device), ema, r1, x_dim, slots, h_dim, classes))


def free_bytes(device):
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return host_free_bytes()


def check_fit(n_images, image, batch, iters_per_replay, device, runs=1, eager=False, headroom=0.8, hidden=H_DIM):
    """One line if the data is smaller than a batch, or `runs` runs for these C x S x S images
    (and hidden layers `hidden` wide) and the images themselves would not fit in `headroom` of the device's free memory (the rest
    for the CUDA graph and torch). Checked before the data is on the device."""
    if n_images < batch:
        raise FastganError(f"the data has {n_images:,} images, fewer than one batch (--batch-size {batch}); "
                           "lower --batch-size or add images")
    X = math.prod(image)
    per_run = bytes_per_run(batch, iters_per_replay, device, x_dim=X, slots=ONE_SLOT if eager else None, h_dim=hidden)
    data, have = 4 * n_images * X, free_bytes(device)
    if runs * per_run + data <= headroom * have:
        return
    c, s, _ = image
    need = (runs * per_run + data) / 2**30
    if runs > 1 and per_run + data <= headroom * have:
        fit = int((headroom * have - data) // per_run)
        raise FastganError(f"{runs} runs at batch {batch} need about {need:.1f} GiB of memory and {have / 2**30:.1f} GiB "
                           f"is free on {device}: at most {fit} runs fit; sweep fewer runs at a time, or lower "
                           "--iters-per-replay (each run holds that many iterations of noise)")
    raise FastganError(f"{s}x{s} {'RGB' if c == 3 else 'grey'} images need about {need:.1f} GiB for the model, its "
                       f"optimiser state, one batch's activations and the data, and {have / 2**30:.1f} GiB is free on "
                       f"{device}: lower --image-size (or --batch-size, or --hidden)")
