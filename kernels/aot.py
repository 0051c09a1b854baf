"""Ahead-of-time compilation of the kernels' real launches for a GPU, on any machine.

Triton's interpreter checks the math but skips the compiler; this module checks the program.
Inside `record()`, every `@triton.jit` launch is recorded (kernel, arguments, grid) instead of
run, and the launchers accept CPU tensors, so a trainer's own code, run on the CPU, lists
exactly the specializations it would launch on a GPU: signatures, constexprs, block sizes and
pointer alignment as they really are (a CPU allocation is 64-byte aligned and a CUDA one
512-byte aligned, so a view's offset decides its 16-byte alignment on both alike).
`compile_launch` then builds the sm_XX code with triton's own compiler (its wheel ships ptxas
and cuobjdump), and `resources` reads registers, spills, shared memory and the product
instructions from the result. No GPU is touched.

Needs compiled kernels: import `kernels` with TRITON_INTERPRET unset (a process of its own
where the tests run the interpreter).
"""

import contextlib
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler.compiler import make_backend
from triton.runtime.jit import JITFunction, create_function_from_signature

from . import _checks

BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
ARCHS = (90, 80)


@dataclass
class Launch:
    """One recorded kernel launch: what the GPU would have been asked to run."""

    kernel: JITFunction
    args: tuple
    kwargs: dict
    grid: tuple

    @property
    def name(self):
        return self.kernel.fn.__name__.strip("_").removesuffix("_kernel")

    @property
    def programs(self):
        n = 1
        for g in self.grid:
            n *= g
        return n

    def ints(self):
        """The launch's plain integer arguments by name (sizes, strides): for reports."""
        names = [p.name for p in self.kernel.params]
        return {k: v for k, v in zip(names, self.args) if isinstance(v, int) and not isinstance(v, bool)}

    def constexprs(self):
        names = {p.name for p in self.kernel.params if p.is_constexpr}
        return {k: v for k, v in self.kwargs.items() if k in names}


@contextlib.contextmanager
def record():
    """Yield a list that fills with a `Launch` per kernel launch made inside the block; nothing runs."""
    if _checks.INTERPRETED:
        raise RuntimeError("kernels.aot.record needs compiled kernels: import kernels with TRITON_INTERPRET unset")
    launches = []
    run = JITFunction.run

    def recorded(self, *args, grid, warmup, **kwargs):
        if callable(grid):
            raise TypeError(f"{self.fn.__name__}: record() needs a concrete grid, not a function of the meta-parameters")
        launches.append(Launch(self, args, kwargs, tuple(grid)))

    JITFunction.run = recorded
    _checks.RECORDING = True
    try:
        yield launches
    finally:
        JITFunction.run = run
        _checks.RECORDING = False


class _Binders:
    """Triton's own argument binder (specialization: types, 16-byte alignment, ints equal to 1)."""

    def __init__(self, target):
        self.target = target
        self.backend = make_backend(target)
        self.binders = {}

    def specialize(self, launch):
        fn = launch.kernel
        binder = self.binders.get(fn)
        if binder is None:
            binder = self.binders[fn] = create_function_from_signature(fn.signature, fn.params, self.backend)
        kwargs = {"debug": False, **launch.kwargs}
        bound, specialization, options = binder(*launch.args, **kwargs)
        return fn._pack_args(self.backend, kwargs, bound, specialization, options)


class Compiler:
    """Compiles launches for one target, each distinct specialization once."""

    def __init__(self, arch, warp_size=32):
        self.target = GPUTarget("cuda", arch, warp_size)
        self.binders = _Binders(self.target)
        self.cache = {}

    def key(self, launch):
        options, signature, constexprs, attrs = self.binders.specialize(launch)
        return (launch.kernel.fn.__name__, tuple(signature.items()), tuple(sorted(constexprs.items())),
                repr(sorted(attrs.items())), repr(sorted(options.__dict__.items())))

    def compile(self, launch):
        """The CompiledKernel for the launch's specialization; raises on a compile error."""
        key = self.key(launch)
        if key not in self.cache:
            options, signature, constexprs, attrs = self.binders.specialize(launch)
            src = triton.compiler.ASTSource(launch.kernel, signature, constexprs, attrs)
            try:
                self.cache[key] = triton.compile(src, target=self.target, options=options.__dict__)
            except Exception as e:
                self.cache[key] = e
        result = self.cache[key]
        if isinstance(result, Exception):
            raise result
        return result


_RESOURCE = re.compile(r"REG:(\d+)\s+STACK:(\d+)\s+SHARED:(\d+)\s+LOCAL:(\d+)")


def resources(compiled):
    """Registers, spilled bytes per thread (stack), shared memory and how the products are done."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        out = subprocess.run([os.path.join(BIN, "cuobjdump"), "--dump-resource-usage", f.name],
                             capture_output=True, text=True, check=True).stdout
    m = _RESOURCE.search(out)
    if m is None:
        raise RuntimeError(f"cuobjdump printed no resource line for {compiled.metadata.name}:\n{out}")
    regs, stack, static_shared, local = map(int, m.groups())
    ptx = compiled.asm["ptx"]
    if "tt.dot" not in compiled.asm["ttir"]:
        dot = "-"  # no matrix product in this kernel
    else:
        dot = "wgmma" if "wgmma" in ptx else "mma" if re.search(r"\bmma\.sync", ptx) else "fma"
    return {
        "regs": regs,
        "spill_bytes": stack + local,
        "shared_bytes": max(static_shared, compiled.metadata.shared),
        "num_warps": compiled.metadata.num_warps,
        "dot": dot,
    }


def toolchain_missing():
    """Why compiling cannot work here, or None (ptxas and cuobjdump come with triton's wheel)."""
    for tool in ("ptxas", "cuobjdump"):
        if not os.access(os.path.join(BIN, tool), os.X_OK):
            return f"triton's {tool} is not at {BIN}"
    return None
