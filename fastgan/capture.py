"""Capturing the Triton trainer's K iterations in one CUDA graph, checked: the first replay must
give bitwise what the same launches give un-captured (fastgan.graph.GraphTrainer.warm_up)."""

import torch


class CaptureMismatch(RuntimeError):
    """A captured graph's replay gave other numbers than the same launches un-captured."""


def _updated(trainer):
    """Every buffer the iteration updates (parameters, moments, losses, G's EMA): saved and restored."""
    return [*trainer.flat.values(), *trainer.m_flat.values(), *trainer.v_flat.values(), trainer.log,
            *([trainer.ema_flat] if trainer.ema else [])]


def _restore(trainer, saved):
    for b, s in zip(_updated(trainer), saved):
        b.copy_(s)


def checked_graph(trainer):
    """Compile and load every kernel of `trainer`'s iteration, capture its K-iteration graph, and
    check the first replay against the same K iterations launched un-captured; the trainer's
    parameters, moments and samplers are left as they were. Returns the graph. Raises
    CaptureMismatch if the replay differs; compile and capture errors propagate."""
    K = trainer.K
    saved = [b.clone() for b in _updated(trainer)]
    samplers = [b.state_dict() for b in trainer.batchers]
    try:
        trainer.prepare(K)
        trainer._launch(K)  # compiles and loads every specialization (one per launch: see GraphTrainer's hyper)
        want = [b.clone() for b in _updated(trainer)]
        _restore(trainer, saved)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            trainer._launch(K)
        graph.replay()
        got = _updated(trainer)
        if not all(torch.equal(a, b) for a, b in zip(got, want)):
            worst = max((a - b).abs().max().item() for a, b in zip(got, want))
            raise CaptureMismatch(f"the first CUDA-graph replay differs from the same {K} iterations launched "
                                  f"un-captured (largest difference {worst:.3g})")
        return graph
    finally:
        _restore(trainer, saved)
        for b, s in zip(trainer.batchers, samplers):
            b.load_state_dict(s)
