"""The CPU twins' C++ build (kernels/twins.cpp): the launches of the trainer's trusted iterations
(kernels.twins.trusted) called from C++, bitwise the Python twins' numbers without their Python;
and the trainer's noise draw (kernels/uniform.cpp, `uniform_`).

`twins()` builds the extension once per machine and torch version with torch's C++ extension
builder (a C++ compiler and ninja; cached in torch's extension folder, TORCH_EXTENSIONS_DIR or
~/.cache/torch_extensions) and returns it, or None where it cannot: then the Python twins run
every iteration, the same numbers a little slower (one line on stderr says why, once).
FASTGAN_NATIVE=0 turns it off.

Measured on a 2-core CPU (benchmarks/NOTES.md, v4.12): the C++ calls save ~0.12 ms of Python per
iteration, 6% of an iteration at batch 128 on 2 threads; the noise draw, ~60 µs more (v4.15).
"""

import os
import pathlib
import shutil
import sys

import torch

SOURCES = [pathlib.Path(__file__).with_name(name) for name in ("twins.cpp", "uniform.cpp")]
NAME = "fastgan_twins"
_built = {}  # "twins" -> the loaded module, or None where it could not be built


def available():
    """Why the C++ twins cannot be built here ("" when they can): FASTGAN_NATIVE=0, no compiler, no ninja."""
    if os.environ.get("FASTGAN_NATIVE", "1") == "0":
        return "FASTGAN_NATIVE=0"
    if not (shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")):
        return "no C++ compiler (c++ or g++) on the PATH"
    try:
        import ninja  # noqa: F401  (torch's builder runs it)
    except ImportError:
        if not shutil.which("ninja"):
            return "no ninja (pip install ninja)"
    return ""


def _load(cpp_extension):
    """Build (or load the cached build of) the extension. On Linux with OpenMP first, for
    at::parallel_for's threads (twins.cpp's side_by_side runs two products at once with them), and
    again without it where the compiler has none (clang without libomp): the pairs then run one
    after the other, the same numbers."""
    tries = [["-fopenmp"], []] if sys.platform.startswith("linux") else [[]]
    for i, openmp in enumerate(tries):
        try:
            return cpp_extension.load(NAME, [str(s) for s in SOURCES], extra_cflags=["-O3", *openmp],
                                      extra_ldflags=openmp, verbose=False)
        except Exception:
            if i == len(tries) - 1:
                raise


def twins():
    """The C++ twins' module, built on first use, or None (the reason printed once)."""
    if "twins" not in _built:
        _built["twins"] = None
        reason = available()
        if not reason:
            try:
                from torch.utils import cpp_extension

                given = os.environ.get("TORCH_EXTENSIONS_DIR")  # torch's builder: this folder, or a Python's under the default
                root = pathlib.Path(given or cpp_extension.get_default_build_root())
                if not list(root.glob(("" if given else f"py{sys.version_info[0]}{sys.version_info[1]}*/") + f"{NAME}/{NAME}*.so")):
                    print(f"building the CPU trainer's C++ launches (once per machine and torch version, about 30 s; "
                          f"cached in {root}) ...", file=sys.stderr)
                _built["twins"] = _load(cpp_extension)
            except Exception as e:  # a broken toolchain: train on, slower
                lines = str(e).strip().splitlines() or [""]  # the compiler's first error, else the last line
                said = next((line for line in lines if "error:" in line), lines[-1]).strip()
                reason = f"the C++ build failed ({type(e).__name__}: {said[:200]})"
        if reason and reason != "FASTGAN_NATIVE=0":
            print(f"fastgan: the CPU trainer's launches run as Python twins ({reason}); the same numbers, ~6% slower",
                  file=sys.stderr)
    return _built["twins"]


def uniform_(t, low, high, generator):
    """t.uniform_(low, high, generator=generator), with the same numbers and the generator in the same
    state after it: drawn in C++ (kernels/uniform.cpp, ~5x faster) where the C++ twins are already
    built and t is a contiguous float32 CPU tensor, else by torch. Returns t."""
    cxx = _built.get("twins")
    if cxx is None or not (t.is_cpu and t.dtype is torch.float32 and t.is_contiguous() and generator.device.type == "cpu"):
        return t.uniform_(low, high, generator=generator)
    cxx.uniform_(t, low, high, generator)
    return t
