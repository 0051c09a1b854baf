"""The Triton trainer: the whole alternating D/G iteration as Triton launches over static
buffers, K iterations captured in one CUDA graph and replayed (`--backend graph`), or the same
launches un-captured (`--backend fused`), or on a CPU each launch's CPU twin (kernels.twins: the
default there; with TRITON_INTERPRET=1 the Triton kernels in Triton's interpreter, as the tests
run them). With fastgan/model.py's plain-PyTorch reference, the only other copy of the iteration.

Runs: R GANs of a sweep (each its own parameters, optimiser settings, data order and noise) train
together: every buffer has a leading run axis and every launch covers all runs (a program-id
axis over runs), so the launches per iteration do not grow with R and each run's numbers are
bitwise those of the same run trained alone. On a CPU the runs spread over the cores instead
(fastgan.cpu_workers). R = 1 is an ordinary run.

Per replay of K iterations, outside the graph and with no host sync, a few launches fill the
static inputs: batch indices, noise, and each step's Adam terms and R1 gamma per run (from the
step number). Per iteration, 10 launches whatever R and the options:

  D step   G1, G2 on [z_d; z_g] (G(z_g) for the G step too) | D1 on [real; fake], the real rows
           read through the batch's indices | D's losses and every gradient (with --r1 the R1
           penalty's closed form), one launch | Adam on D's flat buffer
  G step   D1 on G(z_g) | D's input gradient for G's loss, one launch | G2 backward | G1
           backward | Adam on G's flat buffer (with an EMA of G, --g-ema or --g-ema-rel, in the same pass)
  (benchmarks/NOTES.md: the split sums, slots and counts of each launch)

Launch configurations (tiles, split-M, warps) come from kernels/configs by layer shape, the
same for every run, so a sweep's run equals the run alone bitwise. `precision` picks the
products' input precision (kernels.linear_act: "ieee", "tf32x3", "tf32") for every layer.

Each iteration's four losses per run land in row i of a (K, slots, R, 4) buffer; after a replay
the last row's slots are added in order into (R, 4). Capture is safe by construction: `warm_up`
compiles every kernel and captures the K-iteration graph before training, each launch has one
specialization whatever the iteration (rows 16-byte aligned), and a shorter remainder runs
un-captured. Checkpoints use the eager format: a run moves between backends.
"""

import contextlib

import torch

from . import capture, checkpoint, cpu_workers, kernels
from .buffers import ONE_SLOT, buffer_table, flat_views
from .checkpoint import NETS
from .classes import n_classes
from .kernels import ACT_RELU, ACT_SIGMOID, adam_terms
from .kernels import twins as cpu_twins
from .kernels._checks import INTERPRETED
from .kernels.shared import PRECISIONS
from .model import TORCH_OPS, Z_DIM, hidden_of, nets
from .recipes import ADAM_BETAS, ADAM_EPS, Hyper


def _per_run(value, runs, what):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * runs
    if len(values) != runs:
        raise ValueError(f"{what}: {len(values)} values for {runs} runs")
    return values


class GraphTrainer:
    """A trainer (fastgan.backends.Trainer): advance(n) runs n iterations (replaying a captured
    graph on CUDA) and returns the last iteration's [d_loss, d_real_loss, d_fake_loss, g_loss]
    per run as an (R, 4) device tensor.

    params, lr, beta1 and batcher are one run's, or lists of R runs' (a sweep: the batchers share one images tensor
    and batch size); beta2 is shared. `hyper` (fastgan.recipes.Hyper, one or R) gives each run's settings instead:
    learning rates and decay, R1 and G's EMA. One run: `params` are its tensors; `run_params(r)` gives run r's.
    `precision`: every product's input precision. `twins`: each launch's CPU twin (kernels.twins; default: on CPU
    tensors, unless TRITON_INTERPRET=1 asks for the Triton kernels in the interpreter, as the tests do).
    """

    backend = "graph"  # `--backend fused` is this trainer with capture=False

    def __init__(self, params, lr, batcher, iters_per_replay, capture=None, betas=ADAM_BETAS, precision="ieee",
                 hyper=None, twins=None):
        self.single = isinstance(params, dict)
        run_params = [params] if self.single else list(params)
        R = len(run_params)
        self.batchers = _per_run(batcher, R, "batchers")
        if hyper is None:
            hyper = [Hyper(lr_r, lr_r, b1) for lr_r, b1 in zip(_per_run(lr, R, "lr"), _per_run(betas[0], R, "beta1"))]
        self.hypers = _per_run(hyper, R, "hyper")
        self.beta1s, self.beta2 = [h.beta1 for h in self.hypers], betas[1]
        self.ema, self.r1 = any(h.keeps_ema for h in self.hypers), any(h.r1 for h in self.hypers)  # G's EMA kept; R1 in d_grad
        images, B = self.batchers[0].images, self.batchers[0].batch_size
        device = images.device
        C, H = n_classes(run_params[0]), hidden_of(run_params[0])  # C: a conditional model's label columns
        self.X = X = images.shape[1] - C  # the images' pixels (their rows end in the label columns)
        if any(b.images is not images or b.batch_size != B for b in self.batchers) or \
                {(hidden_of(p), n_classes(p)) for p in run_params} != {(H, C)}:
            raise ValueError("the runs of one trainer share one images tensor, batch size, hidden width and classes")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.R, self.B, self.K, self.images, self.precision = R, B, iters_per_replay, images, precision
        self.nets = nets(X, H, C)  # net -> its parameters' shapes, for these images' size, width and classes
        self.capture = device.type == "cuda" if capture is None else capture
        self.twins = device.type == "cpu" and not INTERPRETED if twins is None else twins
        self.L, self.ops = (cpu_twins, TORCH_OPS) if self.twins else (kernels, kernels.OPS)  # the launches; G's forward
        self.chunk = iters_per_replay if self.capture else None  # a captured graph replays K iterations; else any n <= K

        self.flat, self.grad_flat, self.m_flat, self.v_flat = {}, {}, {}, {}  # net -> buffer (buffer_table)
        self.hD = self.hD_pre = self.hDg = self.hDg_pre = self.z_draw = self.ema_flat = self.gamma = self.xd = None  # unless in the table
        slots = ONE_SLOT if self.twins else None  # a twin writes whole sums
        spread = cpu_workers.processes(R, B, X + C, H, Z_DIM + C) if self.twins else 1  # processes the runs share
        zeros = cpu_workers.shared_zeros if spread > 1 else torch.zeros
        for attr, net, shape, dtype in buffer_table(R, B, self.K, device, self.ema, self.r1, X, slots, H, C):
            buffer = zeros(shape, dtype=dtype, device=device)
            if net is None:
                setattr(self, attr, buffer)
            else:
                getattr(self, attr)[net] = buffer
        self.idx = self.idx[:, : R * B].view(self.K, R, B)
        self.P, self.Gr, self.M, self.V = {}, {}, {}, {}  # name -> (R, *shape) views; Gr: (slots, R, *shape)
        for net, shapes in self.nets.items():
            for store, views in ((self.flat, self.P), (self.grad_flat, self.Gr), (self.m_flat, self.M),
                                 (self.v_flat, self.V)):
                views.update(flat_views(store[net], shapes))
        with torch.no_grad():
            for r, p in enumerate(run_params):
                for name, t in p.items():
                    self.P[name][r].copy_(t)
        self.E = flat_views(self.ema_flat, self.nets["G"]) if self.ema else {}  # name -> (R, *shape) EMA views
        if self.ema:
            self.ema_flat.copy_(self.flat["G"])  # the EMA starts at G's initial weights
        self.gamma = None if self.gamma is None else self.gamma[:, :R]  # (K, R) of the padded rows
        self.params = self.run_params(0) if self.single else None
        self.t = 0  # Adam steps taken (the same for both networks and every run), known on the host
        self.graphs = {}  # replay length -> captured graph (warm_up captures K)
        self._run_views = {}  # run slice -> its buffers' views (_views); (i, run slice, losses) -> _step_views
        self.plans = {} if self.xd is None else None  # twins.replay's; None: label columns copied outside the launches
        self.workers = cpu_workers.Workers(self, spread) if spread > 1 else None

    def _d1(self, L, P, x, h, pre, rows=None):
        """D1 forward: whole into h (bias and ReLU here), or as K-chunk slots in pre that its reader finishes."""
        split = pre is not None
        L.linear_act_forward(x, P["D_W1"], P["D_b1"], pre if split else h, ACT_RELU, self.precision, rows=rows, partials=split)
        return (pre, P["D_b1"]) if split else None

    def run_params(self, r):
        """Run r's parameters: name -> view (in, out) or (n,), as in fastgan.model."""
        return {k: v[r] for k, v in self.P.items()}

    def sample_params(self, r):
        """The G weights run r's grids draw with: its EMA's (name -> view) with g_ema, else its parameters."""
        return {k: v[r] for k, v in self.E.items()} if self.hypers[r].keeps_ema else self.run_params(r)

    def _views(self, s):
        """The buffers of the runs s (their run axis sliced), made once per run slice: name -> view."""
        views = self._run_views.get((s.start, s.stop))
        if views is None:
            sliced = {name: None if t is None else t[s] for name, t in (
                ("xx", self.xx), ("xd", self.xd), ("hG", self.hG), ("hD", self.hD), ("hDg", self.hDg),
                ("dfake", self.dfake), ("ema", self.ema_flat))}
            sliced.update({name: None if t is None else t[:, s] for name, t in (
                ("hD_pre", self.hD_pre), ("hDg_pre", self.hDg_pre), ("dhG", self.dhG))})
            views = self._run_views[(s.start, s.stop)] = dict(
                sliced, P={k: v[s] for k, v in self.P.items()}, Gr={k: v[:, s] for k, v in self.Gr.items()},
                flat={k: t[s] for k, t in self.flat.items()}, grads={k: t[:, s] for k, t in self.grad_flat.items()},
                m={k: t[s] for k, t in self.m_flat.items()}, v={k: t[s] for k, t in self.v_flat.items()})
            fakes = views["xx"] if views["xd"] is None else views["xd"]  # D's input rows of G(z): [G(z_d); G(z_g)]
            B, X = self.B, self.X  # and the slices of them an iteration takes
            views.update(fake_d=fakes[:, :B], fake_g=fakes[:, B:], hG_g=views["hG"][:, B:], xx_g=views["xx"][:, B:],
                         dfake_x=views["dfake"][..., :X], D_W1_x=views["P"]["D_W1"][:, :X])
        return views

    def _step_views(self, i, s, losses):
        """Iteration i's inputs for the runs s (noise, Adam, loss and batch rows, R1 gammas), made once (~25 µs of Python)."""
        key = (i, s.start, s.stop, losses)
        views = self._run_views.get(key)
        if views is None:
            z, hyper = self.z[i, s], self.hyper[i, :, s]
            views = self._run_views[key] = (z, z[:, self.B:], hyper[0], hyper[1], *(
                (self.log[i, :, s, :3], self.log[i, :, s, 3:]) if losses else (None, None)),
                (self.images, self.idx[i, s]), self.gamma[i, s] if self.r1 else None)  # real: images[idx[i, r]]
        return views

    def _iteration(self, i, s=slice(None), losses=True, L=None):
        """Iteration i of a replay for the runs s (all in each launch, or one: see _launch); its
        losses into log[i] unless `losses` is False (the CPU twins then skip them). L: the
        launches (default self.L; kernels.twins.trusted's inside it)."""
        B, pr, L, V = self.B, self.precision, self.L if L is None else L, self._views(s)
        P, Gr, flat, grads, m, v = V["P"], V["Gr"], V["flat"], V["grads"], V["m"], V["v"]
        xx, hG, hD, hD_pre, hDg, hDg_pre, dfake, dhG = (V[k] for k in ("xx", "hG", "hD", "hD_pre", "hDg", "hDg_pre",
                                                                        "dfake", "dhG"))
        z, z_g, hyper_d, hyper_g, log_d, log_g, real, gamma = self._step_views(i, s, losses)
        X, xd, fake_d, fake_g, hG_g = self.X, V["xd"], V["fake_d"], V["fake_g"], V["hG_g"]
        # D step
        L.linear_act_forward(z, P["G_W1"], P["G_b1"], hG, ACT_RELU, pr)
        L.linear_act_forward(hG, P["G_W2"], P["G_b2"], xx, ACT_SIGMOID, pr)
        if xd is not None:  # a conditional model: G(z) with the one-hot label columns G drew it for (z's last)
            xd[..., :X].copy_(xx)
            xd[..., X:].copy_(z[..., Z_DIM:])
        pre = self._d1(L, P, fake_d, hD, hD_pre, rows=real)
        L.d_grad(fake_d, P["D_W2"], P["D_b2"], log_d, Gr["D_W1"], Gr["D_b1"], Gr["D_W2"], Gr["D_b2"],
                 split=B, t0=1.0, t1=0.0, h=hD, pre=pre, rows=real, precision=pr,  # R1 on the pixels only:
                 r1=gamma, w1=V["D_W1_x"] if self.r1 else None)
        L.adam_update(flat["D"], grads["D"], m["D"], v["D"], hyper_d, self.beta2, ADAM_EPS)
        # G step (G(z_g) was computed above with the same G parameters)
        pre = self._d1(L, P, fake_g, hDg, hDg_pre)
        L.d_input_grad(hDg, P["D_W1"], P["D_W2"], P["D_b2"], log_g, dfake, t=1.0, pre=pre, precision=pr)
        L.linear_act_backward(hG_g, P["G_W2"], V["xx_g"], V["dfake_x"], dhG, Gr["G_W2"], Gr["G_b2"], ACT_SIGMOID,
                              pr, partials=True)
        L.linear_act_backward(z_g, P["G_W1"], hG_g, dhG, None, Gr["G_W1"], Gr["G_b1"], ACT_RELU, pr,
                              partials=True, dy_partials=True)
        L.adam_update(flat["G"], grads["G"], m["G"], v["G"], hyper_g, self.beta2, ADAM_EPS, ema=V["ema"])

    def _launch(self, n):
        if self.workers is not None:
            return self.workers.run(n)
        # The CPU twins take one run at a time: torch's vectorized loops round a batch of runs' tails otherwise.
        self.iterations(n, [slice(r, r + 1) for r in range(self.R)] if self.twins and self.R > 1 else [slice(None)])

    def iterations(self, n, runs):
        """Iterations 0..n-1 of a replay for each run slice in `runs`. On a CPU the first goes through the twins'
        argument checks and the rest, which pass the same buffers, skip them (kernels.twins.trusted: the C++ twins
        where they could be built, recorded once per n and replayed, kernels.twins.replay; the same numbers); only
        the first and the last compute their losses (only the last's are read, run_prepared; twins' LOSSES)."""
        for s in runs:
            self._iteration(0, s)

        def later(L):
            for i in range(1, n):
                for s in runs:
                    self._iteration(i, s, losses=i == n - 1 or not self.twins, L=L)
        with cpu_twins.trusted() if self.twins else contextlib.nullcontext(self.L) as L:
            cpu_twins.replay(self.plans, (n, *((s.start, s.stop) for s in runs)), later, L)

    def close(self):
        """End the worker processes of a CPU sweep (fastgan.cpu_workers), if any."""
        if self.workers is not None:
            self.workers.close()

    def warm_up(self):
        """Before training: on CUDA (before any other thread uses the GPU) compile and load every
        kernel, capture the K-iteration graph and check its first replay (fastgan.capture); on a
        CPU build the C++ twins (kernels.native), so no build stops the first advance."""
        if self.twins:
            cpu_twins.native.twins()
        elif self.capture and self.K not in self.graphs:
            self.graphs[self.K] = capture.checked_graph(self)

    def prepare(self, n):
        """Fill the static inputs of the next n iterations (async device work, no host sync)."""
        uniform = cpu_twins.native.uniform_ if self.twins else None  # on a CPU the noise drawn in C++: the same numbers
        for r, batcher in enumerate(self.batchers):
            if self.z_draw is None:
                batcher.draw(n, self.idx[:n, r], self.z[:n, r], uniform)
            else:  # drawn contiguous, as a run alone draws it, then placed: the same numbers
                batcher.draw(n, self.idx[:n, r], self.z_draw[:n], uniform)
                self.z[:n, r].copy_(self.z_draw[:n])
        steps = torch.arange(self.t + 1, self.t + n + 1, device=self.hyper.device)
        if self.r1:  # each step's R1 gamma per run (lazy R1: gamma k on every k-th step, else 0)
            self.gamma[:n].copy_(torch.stack([h.r1_gammas(steps) for h in self.hypers], dim=1))
        for i, net in enumerate(("D", "G")):  # each step's learning rate per run (its decay), float64
            lrs = torch.stack([h.lrs(net, steps) for h in self.hypers], dim=1)
            self.hyper[:n, i, :, :3].copy_(adam_terms(steps, lrs, self.beta1s, self.beta2))
        if self.ema:  # each step's EMA weight 1 - beta per run (0: a run without one)
            self.hyper[:n, 1, :, 3].copy_(torch.stack([h.ema_weights(steps) for h in self.hypers], dim=1))

    def run_prepared(self, n):
        """Run the n prepared iterations: replay the captured graph when n is its length (K),
        else launch them un-captured (a remainder; no new capture mid-run)."""
        if (graph := self.graphs.get(n)) is not None:
            graph.replay()
        else:
            self._launch(n)
        self.t += n
        last = self.log[n - 1]  # the heads' slots, added in order (elementwise: the same for any R); no host sync
        self.losses.copy_(last[0])
        for slot in last[1:]:
            self.losses.add_(slot)
        return self.losses

    def advance(self, n):
        if not 1 <= n <= self.K:
            raise ValueError(f"advance takes 1..{self.K} iterations (the replay size), got {n}")
        self.prepare(n)
        return self.run_prepared(n)

    def state_dict(self, run=0):
        """Device copies of everything run `run`'s iterations update, in the checkpoint format (a sweep's run resumes alone)."""
        return checkpoint.run_state({k: v[run] for k, v in self.P.items()}, {
            net: (self.t, {"exp_avg": {k: self.M[k][run] for k in shapes}, "exp_avg_sq": {k: self.V[k][run] for k in shapes}})
            for net, shapes in NETS.items()}, self.sample_params(run) if self.hypers[run].keeps_ema else None)

    def load_state_dict(self, state, run=0):
        """Continue run `run` from a state_dict (or a checkpoint): parameters, Adam moments and
        step. The runs of a sweep share one step count: load them from one iteration."""
        adam = {net: checkpoint.read_adam(state, net) for net in NETS}
        steps = {step for step, _ in adam.values()}
        if len(steps) != 1:
            raise ValueError(f"the Triton trainer needs equal G and D Adam step counts, got {sorted(steps)}")
        self.t = steps.pop()
        with torch.no_grad():
            for k, v in self.P.items():
                v[run].copy_(state["params"][k])
            for k, v in self.E.items():  # G's EMA (a state without one: it restarts at G's weights)
                v[run].copy_(checkpoint.g_weights(state)[k])
            for net, shapes in NETS.items():
                for k in shapes:
                    for buf, m in ((self.M, "exp_avg"), (self.V, "exp_avg_sq")):
                        buf[k][run].copy_(adam[net][1][m][k]) if self.t else buf[k][run].zero_()
