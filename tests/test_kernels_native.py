"""kernels.native, the C++ build of the CPU twins (kernels/twins.cpp): each launch bitwise its
Python twin's (kernels.twins) on fresh random inputs (the same ATen operations in the same order,
so no tolerance: any difference is a bug), over odd shapes, one run and three, gathered real
rows, partial-sum slots, the R1 penalty on, off and lazily zero, G's EMA, losses on and off; the
gathered rows' cache and forget_gathered; and the fallback where the build cannot run.

On 1 thread and on 2 (`threads`): on 2 the C++ twins run D1's forward on the real and the fake
rows, and G2's dx and dW, side by side on one thread each (twins.cpp's side_by_side), where the
Python twins make each product on MKL's two threads.

The comparisons skip, with the reason, only where the machine cannot build C++ extensions (no
compiler, no ninja, FASTGAN_NATIVE=0); where it can, a failed build fails them.
"""

import itertools

import pytest
import torch
from fastgan.kernels import ACT_NONE, ACT_RELU, ACT_SIGMOID, adam_terms, native
from fastgan.kernels import twins as T

NAN = float("nan")
ACTS = [ACT_NONE, ACT_RELU, ACT_SIGMOID]


@pytest.fixture(params=[1, 2])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cxx():
    reason = native.available()
    if reason:
        pytest.skip(f"the C++ twins cannot be built here: {reason}")
    module = native.twins()
    assert module is not None, "the C++ twins should build on this machine (a compiler and ninja are here)"
    return module


def _same(a, b):
    """Bitwise equal, NaN where the other is NaN (a slot left poisoned on purpose)."""
    return torch.equal(torch.isnan(a), torch.isnan(b)) and torch.equal(a.nan_to_num(), b.nan_to_num())


def _twice(*outs):
    """Two poisoned copies of each output buffer: one for the Python twin, one for the C++ one."""
    return [o.clone() for o in outs], [o.clone() for o in outs]


def _poisoned(*shape):
    return torch.full(shape, NAN)


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize("M,K,N", [(1, 7, 33), (33, 129, 7), (7, 785, 128)])
@pytest.mark.parametrize("act,rows,partials", [(a, r, p) for a, r, p in itertools.product(ACTS, (False, True), (False, True))
                                               if not (p and a != ACT_RELU)])
def test_forward_is_the_python_twins(cxx, R, M, K, N, act, rows, partials):
    x, w, b = torch.rand(R, M, K), torch.randn(R, K, N) / K**0.5, torch.randn(R, N)
    real = (torch.rand(50, K), torch.randint(0, 50, (R, 5))) if rows else None
    G = 5 if rows else 0
    py, cc = _twice(_poisoned(2, R, G + M, N) if partials else _poisoned(R, G + M, N))
    T.linear_act_forward(x, w, b, py[0], act, rows=real, partials=partials)
    cxx.linear_act_forward(x, w, b, cc[0], act, "ieee", rows=real, partials=partials)
    assert _same(py[0], cc[0])


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize("M,K,N", [(1, 7, 33), (33, 129, 7), (129, 128, 785)])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("partials,dy_slots,with_dx", [(False, 0, True), (True, 2, True), (True, 1, False)])
def test_backward_is_the_python_twins(cxx, R, M, K, N, act, partials, dy_slots, with_dx):
    x, w = torch.randn(R, M, K), torch.randn(R, K, N) / K**0.5
    y = torch.rand(R, M, N) if act == ACT_SIGMOID else torch.randn(R, M, N).relu()
    dy = torch.randn(dy_slots, R, M, N) if dy_slots else torch.randn(R, M, N)
    slot = (2,) if partials else ()
    py, cc = _twice(_poisoned(*slot, R, M, K), _poisoned(*slot, R, K, N), _poisoned(*slot, R, N))
    for launches, (dx, dw, db) in ((T, py), (cxx, cc)):
        launches.linear_act_backward(x, w, y, dy, dx if with_dx else None, dw, db, act, "ieee", partials=partials,
                                     dy_partials=bool(dy_slots))
    assert all(_same(a, b) for a, b in zip(py, cc))


def _head_inputs(R, M, K, H):
    return torch.rand(R, M, K), torch.randn(R, H, 1) / H**0.5, torch.randn(R, 1), torch.randn(R, M, H).relu()


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize("M,K,H,split", [(9, 7, 33, 4), (66, 785, 128, 33), (2, 129, 7, 1)])
@pytest.mark.parametrize("rows,chunked,losses", [(False, False, True), (True, False, True), (True, True, False),
                                                 (False, True, True)])
@pytest.mark.parametrize("r1", ["off", "on", "zero", "pixels"])
def test_d_grad_is_the_python_twins(cxx, R, M, K, H, split, rows, chunked, losses, r1):
    """With the R1 penalty (gammas per run, one of them 0), all gammas 0 (lazy R1's other steps)
    and on a conditional D's pixels only (D1's first rows)."""
    G = split if rows else 0
    x, w2, b2, h = _head_inputs(R, M - G, K, H)
    h = torch.randn(R, M, H).relu()
    real = (torch.rand(40, K), torch.randint(0, 40, (R, G))) if rows else None
    pre = (torch.randn(2, R, M, H), torch.randn(R, H)) if chunked else None
    w1 = torch.randn(R, K, H) / K**0.5
    gamma = {"off": None, "on": torch.tensor([0.3, 0.0, 1.2][:R]), "zero": torch.zeros(R),
             "pixels": torch.full((R,), 0.7)}[r1]
    w1_r1 = None if gamma is None else (w1[:, : max(K // 2, 1)] if r1 == "pixels" else w1)
    py, cc = _twice(_poisoned(2, R, 3), _poisoned(1, R, K, H), _poisoned(1, R, H), _poisoned(1, R, H, 1),
                    _poisoned(1, R, 1))
    for launches, (loss, dw1, db1, dw2, db2) in ((T, py), (cxx, cc)):
        launches.d_grad(x, w2, b2, loss if losses else None, dw1, db1, dw2, db2, split=split, t0=1.0, t1=0.0,
                        h=None if chunked else h, pre=pre, rows=real, precision="ieee", r1=gamma, w1=w1_r1)
    assert all(_same(a, b) for a, b in zip(py, cc))


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize("M,K,H", [(1, 7, 33), (33, 785, 128)])
@pytest.mark.parametrize("chunked,losses", [(False, True), (True, True), (False, False)])
def test_d_input_grad_is_the_python_twins(cxx, R, M, K, H, chunked, losses):
    _, w2, b2, h = _head_inputs(R, M, K, H)
    w1 = torch.randn(R, K, H) / K**0.5
    pre = (torch.randn(3, R, M, H), torch.randn(R, H)) if chunked else None
    py, cc = _twice(_poisoned(2, R, 1), _poisoned(R, M, K))
    for launches, (loss, dx) in ((T, py), (cxx, cc)):
        launches.d_input_grad(None if chunked else h, w1, w2, b2, loss if losses else None, dx, t=1.0, pre=pre,
                              precision="ieee")
    assert all(_same(a, b) for a, b in zip(py, cc))


@pytest.mark.parametrize("R", [1, 3])
@pytest.mark.parametrize("n", [1, 33, 100609])
@pytest.mark.parametrize("ema,g_slots", [(False, 0), (True, 2), (True, 0)])
@pytest.mark.parametrize("hyper_dtype", [torch.float32, torch.float64])
def test_adam_is_the_python_twins(cxx, R, n, ema, g_slots, hyper_dtype):
    """Five steps of each run's own rates and beta1 (and EMA weight, 0 for one run: no EMA there);
    the step terms in float32 (the trainer's buffer, read in place) or float64."""
    p, m, v = torch.randn(R, n), torch.randn(R, n) * 0.1, torch.rand(R, n) * 0.01
    e = torch.randn(R, n)
    py, cc = _twice(p, m, v, e)
    lrs = torch.tensor([[1e-3, 3e-3, 2e-4][:R]], dtype=torch.float64)
    for t in range(1, 6):
        g = torch.randn(g_slots, R, n) if g_slots else torch.randn(R, n)
        hyper = torch.zeros(R, 4, dtype=hyper_dtype)
        hyper[:, :3] = adam_terms(torch.tensor([t]), lrs, [0.5, 0.9, 0.0][:R], 0.999)[0]
        hyper[:, 3] = torch.tensor([0.01, 0.0, 0.5][:R])
        for launches, (pp, mm, vv, ee) in ((T, py), (cxx, cc)):
            launches.adam_update(pp, g, mm, vv, hyper, 0.999, 1e-8, ema=ee if ema else None)
    assert all(torch.equal(a, b) for a, b in zip(py, cc))


def test_gathered_rows_are_kept_until_they_change_or_are_forgotten(cxx):
    """D1's forward gathers the real rows and d_grad reuses them while images and indices are
    unchanged (version counters); an index written in place is seen; one written where torch's
    counter does not move (another process, fastgan.cpu_workers) is seen after forget_gathered."""
    K, N = 11, 5
    images, idx = torch.rand(30, K), torch.tensor([[3, 4]])
    x, w, b = torch.rand(1, 2, K), torch.randn(1, K, N), torch.randn(1, N)
    y = _poisoned(1, 4, N)

    def real_rows():
        cxx.linear_act_forward(x, w, b, y, ACT_NONE, "ieee", rows=(images, idx))
        return y[0, :2].clone()

    first = real_rows()
    idx[0, 0] = 7  # in place: its version moves
    moved = real_rows()
    assert not torch.equal(first[0], moved[0]) and torch.equal(first[1], moved[1])
    idx.numpy()[0, 0] = 3  # behind torch's back: the kept rows are stale
    assert torch.equal(real_rows(), moved)
    T.forget_gathered()  # forgets the C++ twins' rows too
    assert torch.equal(real_rows(), first)


def test_trusted_yields_the_cxx_twins(cxx):
    with T.trusted() as launches:
        assert launches is cxx
    with pytest.raises(RuntimeError):  # no checks inside: torch's own error for a wrong shape
        cxx.linear_act_forward(torch.rand(1, 2, 3), torch.rand(1, 4, 5), torch.rand(1, 5), torch.rand(1, 2, 5), ACT_NONE)


def test_without_a_build_the_python_twins_run_and_one_line_says_why(monkeypatch, capsys):
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "available", lambda: "no ninja (pip install ninja)")
    assert native.twins() is None and native.twins() is None
    with T.trusted() as launches:
        assert launches is T
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Python twins (no ninja (pip install ninja))" in err


def test_a_failed_build_says_the_compilers_first_error(monkeypatch, capsys):
    from torch.utils import cpp_extension

    def fail(*args, **kwargs):
        raise RuntimeError("Error building extension 'fastgan_twins': [1/3] c++ -c twins.cpp\n"
                           "twins.cpp:9:1: error: 'Plan' was not declared\nninja: build stopped: subcommand failed.")
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "available", lambda: "")
    monkeypatch.setattr(cpp_extension, "load", fail)
    assert native.twins() is None
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the C++ build failed (RuntimeError: twins.cpp:9:1: error: 'Plan' was not declared)" in err


def test_without_openmp_the_build_goes_on_without_it(monkeypatch, capsys):
    """A compiler without OpenMP (clang without libomp): built again without -fopenmp, no message."""
    from torch.utils import cpp_extension

    built = object()

    def load(name, sources, extra_cflags, extra_ldflags, verbose):
        if "-fopenmp" in extra_cflags:
            raise RuntimeError("c++: fatal error: omp.h: No such file or directory")
        return built
    monkeypatch.setattr(native, "_built", {})
    monkeypatch.setattr(native, "available", lambda: "")
    monkeypatch.setattr(native.sys, "platform", "linux")
    monkeypatch.setattr(cpp_extension, "load", load)
    assert native.twins() is built
    assert "Python twins" not in capsys.readouterr().err


def test_fastgan_native_0_turns_the_build_off(monkeypatch):
    monkeypatch.setenv("FASTGAN_NATIVE", "0")
    assert native.available() == "FASTGAN_NATIVE=0"
    monkeypatch.setattr(native, "_built", {})
    assert native.twins() is None


@pytest.mark.parametrize("seed", [0, 7])
def test_uniform_is_torchs_draw_and_leaves_the_generator_as_torch_does(cxx, seed):
    """Sizes around the engine's 624-word blocks, from a fresh generator and from one part-way
    through a block, over several ranges, each draw followed by other draws from the same
    generator (randint, randperm): every number and the generator's state bitwise torch's."""
    ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    for n, low, high in [(1, -1.0, 1.0), (7, -1.0, 1.0), (33, 0.0, 1.0), (623, -1.0, 1.0), (624, -3.5, 2.25),
                         (625, -1.0, 1.0), (785, 0.1, 0.7), (100_000, -1.0, 1.0), (129, 5.0, 5.0)]:
        a, b = _poisoned(n), _poisoned(n)
        native.uniform_(a, low, high, ours)
        b.uniform_(low, high, generator=theirs)
        assert torch.equal(a, b) and torch.equal(ours.get_state(), theirs.get_state())
        assert torch.equal(torch.randint(10**6, (5,), generator=ours), torch.randint(10**6, (5,), generator=theirs))
        assert torch.equal(torch.randperm(9, generator=ours), torch.randperm(9, generator=theirs))


def test_uniform_leaves_what_it_cannot_draw_to_torch(cxx):
    """A strided or float64 tensor: torch's draw (the same numbers as torch, by definition)."""
    ours, theirs = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for make in (lambda: torch.empty(6, 10)[:, :7], lambda: torch.empty(9, dtype=torch.float64)):
        a, b = make(), make()
        assert native.uniform_(a, -1.0, 1.0, ours) is a
        b.uniform_(-1.0, 1.0, generator=theirs)
        assert torch.equal(a, b) and torch.equal(ours.get_state(), theirs.get_state())
    with pytest.raises(RuntimeError, match="contiguous float32 CPU tensor"):
        cxx.uniform_(torch.empty(3, dtype=torch.float64), -1.0, 1.0, ours)
