"""The float64 references every kernel test compares against, in one place: plain PyTorch in
double precision on the inputs' values, with autograd for the gradients."""

import torch
import torch.nn.functional as F
from fastgan.kernels import ACT_NONE, ACT_RELU, ACT_SIGMOID

ACTS = {ACT_NONE: lambda t: t, ACT_RELU: torch.relu, ACT_SIGMOID: torch.sigmoid}


def linear_act(x, w, b, act):
    """(xd, wd, bd, y = act(xd @ wd + bd)): leaves that require grad, for y.backward(dy)."""
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (x, w, b))
    return xd, wd, bd, ACTS[act](xd @ wd + bd)


def sigmoid_bce(logits, target):
    """(mean loss, d loss / d logits, d loss / d target or None for a constant target)."""
    ld = logits.detach().double().requires_grad_()
    td = target.detach().double().requires_grad_() if torch.is_tensor(target) else torch.full_like(ld, target)
    loss = F.binary_cross_entropy_with_logits(ld, td)
    loss.backward()
    return loss, ld.grad, td.grad if torch.is_tensor(target) else None


def d_step(x, h, w2, b2, split, t0=1.0, t1=0.0):
    """kernels.d_grad's outputs for D's input x and D1's output h: the D step's losses [sum, part
    0, part 1] (rows [0, split) against t0, the rest against t1) and D's gradients; also each
    bias gradient's sum of |terms| (the error bound of a sum that can cancel)."""
    xd, hd, w2d, b2d = (a.detach().double() for a in (x, h, w2, b2))
    for t in (hd, w2d, b2d):
        t.requires_grad_()
    logit = hd @ w2d + b2d
    logit.retain_grad()
    parts = [F.binary_cross_entropy_with_logits(logit[:split], torch.full_like(logit[:split], t0)),
             F.binary_cross_entropy_with_logits(logit[split:], torch.full_like(logit[split:], t1))]
    total = parts[0] + parts[1]
    total.backward()
    g = hd.grad * (hd > 0)
    return {"losses": torch.stack([total, *parts]).detach(), "dw1": xd.T @ g, "db1": g.sum(0), "dw2": w2d.grad,
            "db2": b2d.grad, "db1_terms": g.abs().sum(0), "db2_terms": logit.grad.abs().sum(0)}


def r1_penalty(x, h, w1, w2, split, gamma):
    """The R1 penalty's gradients to (W1, w2) by float64 autograd (a double backward): D's
    gradient to its input on rows [0, split), with D1's ReLU mask [h > 0] taken from the kernel's
    h (as d_step does), then (gamma / 2) mean |grad_x D|^2 differentiated to W1 and w2."""
    xd, w1d, w2d = (a.detach().double().requires_grad_() for a in (x[:split], w1, w2))
    mask = (h[:split] > 0).double()
    logit = ((xd @ w1d) * mask) @ w2d  # the bias terms do not change grad_x D
    (grad_x,) = torch.autograd.grad(logit.sum(), xd, create_graph=True)
    penalty = gamma / 2 * grad_x.square().sum(1).mean()
    dw1, dw2 = torch.autograd.grad(penalty, (w1d, w2d))
    return dw1, dw2


def d_input(h, w1, w2, b2, t):
    """kernels.d_input_grad's outputs for D1's output h: (the mean loss against t, d loss / d x)."""
    hd, w1d, w2d, b2d = (a.detach().double() for a in (h, w1, w2, b2))
    hd.requires_grad_()
    logit = hd @ w2d + b2d
    loss = F.binary_cross_entropy_with_logits(logit, torch.full_like(logit, t))
    loss.backward()
    return loss.detach(), (hd.grad * (hd > 0)) @ w1d.T
