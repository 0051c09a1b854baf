"""A timing experiment for the CPU trainer's next step: one run's iteration split over two
processes, one thread each, against the same operations in one process and against fastgan's CPU
trainer, in one process sequence on the same cores:

    python -m benchmarks.cpu_split            # batch 128, 600 iterations per mode
    python -m benchmarks.cpu_split --batch 1024 --iters 200

The split: process p owns rows [p B/2, (p + 1) B/2) of every B-row block (its real images, its
G(z_d) and G(z_g) rows), so the D step and the G step need nothing from the other process but
the parameters. Each writes its rows' weight gradients as partial sums into slot p; Adam then
updates half of each network's flat buffer in each process (the two slots added in slot order).
Four spin barriers per iteration on flags in shared memory (after D's gradients, D's Adam, G's
gradients, G's Adam). The seed's model and Adam, no losses, R1 or EMA: the products and passes
of the seed recipe's iteration, not fastgan's code.

Modes, each printed as the median µs per iteration after 100 of warm-up:
  trainer  fastgan's CPU trainer (GraphTrainer on the twins, the seed recipe, advance(100),
           draws included) on the default threads
  whole    the experiment's operations for all rows in this process, on the default threads
  halves   the two halves one after another in this process, on one thread
  split    the two halves in two processes at once, one thread each
and whether halves and split end with the same parameters, bitwise (the split's promise: a run
on any number of cores computes the same numbers).
"""

import argparse
import os
import time

import torch

from fastgan import model
from fastgan.batcher import Batcher
from fastgan.buffers import flat_views
from fastgan.cpu_workers import shared_zeros
from fastgan.graph import GraphTrainer

X, H, Z = model.X_DIM, model.H_DIM, model.Z_DIM
SHAPES = {"G": {"W1": (Z, H), "b1": (H,), "W2": (H, X), "b2": (X,)},
          "D": {"W1": (X, H), "b1": (H,), "W2": (H, 1), "b2": (1,)}}
SIZE = {net: sum(torch.Size(s).numel() for s in shapes.values()) for net, shapes in SHAPES.items()}
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
DRAWS = 100  # noise slabs and batches cycled through


class State:
    """One run's parameters, two gradient slots per network, Adam moments, G's outputs; shared."""

    def __init__(self, B):
        gen = torch.Generator().manual_seed(0)
        self.B = B
        self.flat = {net: shared_zeros((SIZE[net],)) for net in SHAPES}
        self.grads = {net: shared_zeros((2, SIZE[net])) for net in SHAPES}
        self.m = {net: shared_zeros((SIZE[net],)) for net in SHAPES}
        self.v = {net: shared_zeros((SIZE[net],)) for net in SHAPES}
        params = model.init_params(0, "cpu")
        self.P = {net: flat_views(self.flat[net], shapes) for net, shapes in SHAPES.items()}
        with torch.no_grad():
            for net, shapes in SHAPES.items():
                for k in shapes:
                    self.P[net][k].copy_(params[f"{net}_{k}"])
        self.slots = [{net: flat_views(self.grads[net][s], shapes) for net, shapes in SHAPES.items()} for s in range(2)]
        self.images = torch.rand(60000, X, generator=gen)
        self.z = torch.rand(DRAWS, 2 * B, Z, generator=gen) * 2 - 1
        self.idx = torch.randint(0, 60000, (DRAWS, B), generator=gen)
        self.xx = shared_zeros((2 * B, X))  # [G(z_d); G(z_g)]
        self.hG = shared_zeros((2 * B, H))
        self.flags = shared_zeros((16,), dtype=torch.int64)  # flags[8 p]: the last barrier process p reached
        self.step = torch.tensor(0.0)


class Part:
    """Rows [a, b) of each B-row block and half `half` of each flat buffer (whole: all of both)."""

    def __init__(self, s, a, b, slot, half):
        self.s, self.a, self.b, self.slot = s, a, b, slot
        n = b - a
        self.real = torch.empty(n, X)
        self.hD, self.gD = torch.empty(2 * n, H), torch.empty(2 * n, H)
        self.logit, self.dl = torch.empty(2 * n, 1), torch.empty(2 * n, 1)
        self.target = torch.cat([torch.ones(n, 1), torch.zeros(n, 1)])
        self.inD = torch.empty(2 * n, X)  # [real; G(z_d)] rows
        self.hDg, self.lg, self.dlg, self.g1 = torch.empty(n, H), torch.empty(n, 1), torch.empty(n, 1), torch.empty(n, H)
        self.dx, self.g2, self.dh, self.gh = torch.empty(n, X), torch.empty(n, X), torch.empty(n, H), torch.empty(n, H)
        self.zrows = torch.empty(2 * n, Z)
        self.halves = {net: slice(SIZE[net] * half[0] // half[1], SIZE[net] * (half[0] + 1) // half[1]) for net in SHAPES}
        self.gsum = {net: torch.empty(self.halves[net].stop - self.halves[net].start) for net in SHAPES}

    def d_grads(self, it):
        s, a, b, B = self.s, self.a, self.b, self.s.B
        n, G, D, out = b - a, s.P["G"], s.P["D"], s.slots[self.slot]["D"]
        z = s.z[it % DRAWS]
        torch.cat([z[a:b], z[B + a : B + b]], out=self.zrows)
        rows = [slice(a, b), slice(B + a, B + b)]
        for k, r in enumerate(rows):  # G's forward of this part's z_d and z_g rows
            torch.addmm(G["b1"], self.zrows[k * n : (k + 1) * n], G["W1"], out=s.hG[r]).relu_()
            torch.addmm(G["b2"], s.hG[r], G["W2"], out=s.xx[r]).sigmoid_()
        torch.index_select(s.images, 0, s.idx[it % DRAWS, a:b], out=self.inD[:n])
        self.inD[n:].copy_(s.xx[a:b])
        torch.addmm(D["b1"], self.inD, D["W1"], out=self.hD).relu_()
        torch.addmm(D["b2"], self.hD, D["W2"], out=self.logit)
        torch.sigmoid(self.logit, out=self.dl)
        self.dl.sub_(self.target).mul_(1.0 / B)  # a mean over the whole batch's B rows
        torch.mm(self.dl, D["W2"].t(), out=self.gD)
        torch.ops.aten.threshold_backward.grad_input(self.gD, self.hD, 0, grad_input=self.gD)
        torch.mm(self.hD.t(), self.dl, out=out["W2"])
        torch.sum(self.dl, 0, out=out["b2"])
        torch.sum(self.gD, 0, out=out["b1"])
        torch.mm(self.inD.t(), self.gD, out=out["W1"])

    def g_grads(self, it):
        s, a, b, B = self.s, self.a, self.b, self.s.B
        n, G, D, out = b - a, s.P["G"], s.P["D"], s.slots[self.slot]["G"]
        r = slice(B + a, B + b)  # this part's G(z_g) rows
        torch.addmm(D["b1"], s.xx[r], D["W1"], out=self.hDg).relu_()
        torch.addmm(D["b2"], self.hDg, D["W2"], out=self.lg)
        torch.sigmoid(self.lg, out=self.dlg)
        self.dlg.sub_(1.0).mul_(1.0 / B)
        torch.mm(self.dlg, D["W2"].t(), out=self.g1)
        torch.ops.aten.threshold_backward.grad_input(self.g1, self.hDg, 0, grad_input=self.g1)
        torch.mm(self.g1, D["W1"].t(), out=self.dx)
        torch.ops.aten.sigmoid_backward.grad_input(self.dx, s.xx[r], grad_input=self.g2)
        torch.mm(self.g2, G["W2"].t(), out=self.dh)
        torch.mm(s.hG[r].t(), self.g2, out=out["W2"])
        torch.sum(self.g2, 0, out=out["b2"])
        torch.ops.aten.threshold_backward.grad_input(self.dh, s.hG[r], 0, grad_input=self.gh)
        torch.mm(self.zrows[n:].t(), self.gh, out=out["W1"])
        torch.sum(self.gh, 0, out=out["b1"])

    def adam(self, net, slots):
        s, h = self.s, self.halves[net]
        g = s.grads[net][0, h] if slots == 1 else torch.add(s.grads[net][0, h], s.grads[net][1, h], out=self.gsum[net])
        torch._fused_adam_([s.flat[net][h]], [g], [s.m[net][h]], [s.v[net][h]], [], [s.step], **ADAM)


def iteration(parts, it, slots, barrier=None):
    """One iteration of `parts` (in this process), with a barrier (or nothing) between phases."""
    for phase in (lambda p: p.d_grads(it), lambda p: p.adam("D", slots), lambda p: p.g_grads(it),
                  lambda p: p.adam("G", slots)):
        for p in parts:
            phase(p)
        if barrier:
            barrier()


def timed(run, iters, warm=100):
    times = []
    for it in range(iters):
        t0 = time.perf_counter()
        run(it)
        times.append(time.perf_counter() - t0)
    times = sorted(times[warm:])
    return times[len(times) // 2] * 1e6


def whole(B, iters):
    s = State(B)
    part = Part(s, 0, B, 0, (0, 1))
    return timed(lambda it: (s.step.fill_(it + 1), iteration([part], it, 1)), iters), s


def halves(B, iters):
    torch.set_num_threads(1)
    s = State(B)
    parts = [Part(s, 0, B // 2, 0, (0, 2)), Part(s, B // 2, B, 1, (1, 2))]
    return timed(lambda it: (s.step.fill_(it + 1), iteration(parts, it, 2)), iters), s


def split(B, iters):
    s = State(B)
    pid = os.fork()
    p = 0 if pid else 1
    torch.set_num_threads(1)
    part = Part(s, p * (B // 2), B if p else B // 2, p, (p, 2))
    mine, other, count = s.flags[8 * p : 8 * p + 1], s.flags[8 * (1 - p)], [0]

    def barrier():
        count[0] += 1
        mine.fill_(count[0])
        while other < count[0]:
            pass

    t = timed(lambda it: (s.step.fill_(it + 1), iteration([part], it, 2, barrier)), iters)
    if not pid:
        os._exit(0)
    os.waitpid(pid, 0)
    return t, s


def trainer(B, iters):
    images = torch.rand(60000, X, generator=torch.Generator().manual_seed(0))
    t = GraphTrainer(model.init_params(0, "cpu"), 1e-3, Batcher(images, B, seed=0), 100, capture=False, twins=True)
    t.advance(100)
    times = []
    for _ in range(max(1, (iters - 100) // 100)):
        t0 = time.perf_counter()
        t.advance(100)
        times.append((time.perf_counter() - t0) / 100)
    return sorted(times)[len(times) // 2] * 1e6


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--iters", type=int, default=600)
    args = p.parse_args(argv)
    torch.set_flush_denormal(True)
    threads = torch.get_num_threads()
    print(f"batch {args.batch}, torch {torch.__version__}, {threads} threads by default")
    results = {"trainer": trainer(args.batch, args.iters)}
    results["whole"], _ = whole(args.batch, args.iters)
    results["split"], a = split(args.batch, args.iters)  # before halves: halves sets this process to one thread
    results["halves"], b = halves(args.batch, args.iters)
    for name, us in results.items():
        print(f"{name:8s} {us:8.0f} µs per iteration  {results['trainer'] / us:.2f}x the trainer")
    same = all(torch.equal(a.flat[net], b.flat[net]) for net in SHAPES)
    print(f"halves and split end with the same parameters, bitwise: {same}")


if __name__ == "__main__":
    main()
