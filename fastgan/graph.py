"""The Triton trainer: the whole alternating D/G iteration as Triton launches over static
buffers, K iterations captured in one CUDA graph and replayed (`--backend graph`), or the same
launches un-captured (`--backend fused`, and every run under Triton's interpreter). With the
plain-PyTorch reference in fastgan/model.py, this is the only other copy of the iteration.

Per replay of K iterations, outside the graph and without any host sync, a few launches fill
the static inputs: batch indices (the same shuffled epochs as the eager path), noise for the D
and G steps, and each step's Adam bias terms (computed in float64 from the step number, so no
host scalar is frozen into the graph). Inside the graph, per iteration (13 launches):

  D step   gather real rows | G1, G2 on [z_d; z_g] (G's params do not change in the D step, so
           G(z_g) for the G step is computed here too) | D1 on [real; fake] | D head (D2, both
           BCE means, their backward) | D1 backward (dW, db) | Adam on D's flat buffer
  G step   D1 on G(z_g) | D head (target 1, dh only) | D1 backward (dx only) | G2 backward |
           G1 backward (dW, db) | Adam on G's flat buffer

Each iteration's four losses land in row i of a (K, 4) device buffer the host copies
asynchronously. Capture is safe by construction: `warm_up` compiles every kernel and captures
the one K-iteration graph before training starts (nothing else touches the GPU then), each
launch has one specialization whatever the iteration (per-iteration rows stay 16-byte
aligned), and a shorter remainder runs un-captured rather than capturing mid-run. Without CUDA
(tests under Triton's interpreter) the same launches run un-captured. Checkpoints use the eager format: a run can move between backends.
"""

import torch

import kernels
from kernels import ACT_RELU, ACT_SIGMOID, adam_bias_terms, adam_update, d_head, linear_act_backward, linear_act_forward

from .model import ADAM_BETAS, ADAM_EPS, D_SHAPES, G_SHAPES, H_DIM, X_DIM, Z_DIM

NETS = {"G": G_SHAPES, "D": D_SHAPES}


class CaptureMismatch(RuntimeError):
    """A captured graph's replay gave other numbers than the same launches un-captured."""


def _flat_views(flat, shapes):
    views, offset = {}, 0
    for name, shape in shapes.items():
        n = torch.Size(shape).numel()
        views[name] = flat[offset : offset + n].view(shape)
        offset += n
    return views


class GraphTrainer:
    """advance(n) runs n iterations (replaying a captured graph on CUDA) and returns the
    last iteration's [d_loss, d_real_loss, d_fake_loss, g_loss] as a device tensor."""

    ops = kernels.OPS
    backend = "graph"  # `--backend fused` is this trainer with capture=False

    def __init__(self, params, lr, batcher, iters_per_replay, capture=None, betas=ADAM_BETAS):
        images = batcher.images
        device = images.device
        self.batcher, self.lr, self.K, self.betas = batcher, lr, iters_per_replay, betas
        self.capture = device.type == "cuda" if capture is None else capture
        B, K = batcher.batch_size, iters_per_replay
        self.B = B

        def zeros(*shape, dtype=torch.float32):
            return torch.zeros(shape, dtype=dtype, device=device)

        self.flat, self.grad_flat, self.m_flat, self.v_flat = {}, {}, {}, {}
        self.params, self.grads, self.m, self.v = {}, {}, {}, {}
        for net, shapes in NETS.items():
            n = sum(torch.Size(s).numel() for s in shapes.values())
            for store, views in ((self.flat, self.params), (self.grad_flat, self.grads),
                                 (self.m_flat, self.m), (self.v_flat, self.v)):
                store[net] = zeros(n)
                views.update(_flat_views(store[net], shapes))
        with torch.no_grad():
            for name, t in params.items():
                self.params[name].copy_(t)
        self.t = 0  # Adam steps taken (the same for both networks), known on the host

        self.idx = zeros(K, B, dtype=torch.long)
        self.z = zeros(K, 2 * B, Z_DIM)  # rows [:B] D step, [B:] G step
        # Per iteration [lr / (1 - b1^t), sqrt(1 - b2^t), pad, pad]: rows of 16 bytes, so every
        # row is as aligned as the first and Adam compiles one specialization for all of them.
        self.bias = zeros(K, 4)
        self.log = zeros(K, 4)
        self.xx = zeros(3 * B, X_DIM)  # [real; G(z_d); G(z_g)]
        self.hG = zeros(2 * B, H_DIM)
        self.hD = zeros(2 * B, H_DIM)
        self.dhD = zeros(2 * B, H_DIM)
        self.hDg = zeros(B, H_DIM)
        self.dhDg = zeros(B, H_DIM)
        self.dfake = zeros(B, X_DIM)
        self.dhG = zeros(B, H_DIM)
        self.graphs = {}  # replay length -> captured graph (warm_up captures K)

    def _iteration(self, i):
        B, P, Gr = self.B, self.params, self.grads
        xx, z = self.xx, self.z[i]
        real_fake, fake_g = xx[: 2 * B], xx[2 * B :]
        b1, b2 = self.betas
        # D step
        torch.index_select(self.batcher.images, 0, self.idx[i], out=xx[:B])
        linear_act_forward(z, P["G_W1"], P["G_b1"], self.hG, ACT_RELU)
        linear_act_forward(self.hG, P["G_W2"], P["G_b2"], xx[B:], ACT_SIGMOID)
        linear_act_forward(real_fake, P["D_W1"], P["D_b1"], self.hD, ACT_RELU)
        d_head(self.hD, P["D_W2"], P["D_b2"], self.log[i, :3], self.dhD, Gr["D_W2"], Gr["D_b2"], split=B, t0=1.0, t1=0.0)
        linear_act_backward(real_fake, P["D_W1"], self.hD, self.dhD, None, Gr["D_W1"], Gr["D_b1"], ACT_RELU)
        adam_update(self.flat["D"], self.grad_flat["D"], self.m_flat["D"], self.v_flat["D"], self.bias[i, :2], b1, b2, ADAM_EPS)
        # G step (G(z_g) was computed above with the same G parameters)
        linear_act_forward(fake_g, P["D_W1"], P["D_b1"], self.hDg, ACT_RELU)
        d_head(self.hDg, P["D_W2"], P["D_b2"], self.log[i, 3:], self.dhDg, t0=1.0)
        linear_act_backward(fake_g, P["D_W1"], self.hDg, self.dhDg, self.dfake, None, None, ACT_RELU)
        linear_act_backward(self.hG[B:], P["G_W2"], fake_g, self.dfake, self.dhG, Gr["G_W2"], Gr["G_b2"], ACT_SIGMOID)
        linear_act_backward(z[B:], P["G_W1"], self.hG[B:], self.dhG, None, Gr["G_W1"], Gr["G_b1"], ACT_RELU)
        adam_update(self.flat["G"], self.grad_flat["G"], self.m_flat["G"], self.v_flat["G"], self.bias[i, :2], b1, b2, ADAM_EPS)

    def _launch(self, n):
        for i in range(n):
            self._iteration(i)

    def _buffers(self):
        """Every buffer the iteration updates (parameters, moments, losses): for save/restore."""
        return [*self.flat.values(), *self.m_flat.values(), *self.v_flat.values(), self.log]

    def warm_up(self):
        """On CUDA, before training (and before any other thread uses the GPU): compile and load
        every kernel, capture the K-iteration graph, and check its first replay against the same
        K iterations launched un-captured. Leaves parameters, moments and sampler as they were.
        Raises CaptureMismatch if the replay differs; compile and capture errors propagate."""
        if not self.capture or self.K in self.graphs:
            return
        saved = [b.clone() for b in self._buffers()]
        sampler = self.batcher.state_dict()
        try:
            self.prepare(self.K)
            self._launch(self.K)  # compiles and loads every specialization (one per launch: see bias)
            want = [b.clone() for b in self._buffers()]
            self._restore(saved)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._launch(self.K)
            graph.replay()
            got = self._buffers()
            if not all(torch.equal(a, b) for a, b in zip(got, want)):
                worst = max((a - b).abs().max().item() for a, b in zip(got, want))
                raise CaptureMismatch(f"the first CUDA-graph replay differs from the same {self.K} iterations "
                                      f"launched un-captured (largest difference {worst:.3g})")
            self.graphs[self.K] = graph
        finally:
            self._restore(saved)
            self.batcher.load_state_dict(sampler)

    def _restore(self, saved):
        for b, s in zip(self._buffers(), saved):
            b.copy_(s)

    def prepare(self, n):
        """Fill the static inputs of the next n iterations (async device work, no host sync)."""
        self.batcher.draw(n, self.idx[:n], self.z[:n])
        steps = torch.arange(self.t + 1, self.t + n + 1, device=self.bias.device)
        self.bias[:n, :2].copy_(adam_bias_terms(steps, self.lr, *self.betas))

    def run_prepared(self, n):
        """Run the n prepared iterations: replay the captured graph when n is its length (K),
        else launch them un-captured (a remainder; no new capture mid-run)."""
        graph = self.graphs.get(n)
        if graph is not None:
            graph.replay()
        else:
            self._launch(n)
        self.t += n
        return self.log[n - 1]

    def advance(self, n):
        if not 1 <= n <= self.K:
            raise ValueError(f"advance takes 1..{self.K} iterations (the replay size), got {n}")
        self.prepare(n)
        return self.run_prepared(n)

    def state_dict(self):
        """Device copies of everything the iteration updates: {"params", "adam"} (checkpoint format)."""
        return {"params": {k: v.detach().clone() for k, v in self.params.items()}, "adam": self.adam_state()}

    def load_state_dict(self, state):
        """Continue from a state_dict (or a checkpoint): parameters, Adam moments and step."""
        with torch.no_grad():
            for k in self.params:
                self.params[k].copy_(state["params"][k])
        self.load_adam_state(state["adam"])

    def adam_state(self):
        return {
            net: {
                "step": torch.tensor(float(self.t)),
                "exp_avg": {k: self.m[k].clone() for k in shapes},
                "exp_avg_sq": {k: self.v[k].clone() for k in shapes},
            }
            for net, shapes in NETS.items()
        }

    def load_adam_state(self, state):
        steps = {float(state[net]["step"]) for net in NETS}
        if len(steps) != 1:
            raise ValueError(f"the graph backend needs equal G and D Adam step counts, got {sorted(steps)}")
        self.t = int(steps.pop())
        if self.t == 0:
            return
        with torch.no_grad():
            for net, shapes in NETS.items():
                for k in shapes:
                    self.m[k].copy_(state[net]["exp_avg"][k])
                    self.v[k].copy_(state[net]["exp_avg_sq"][k])
