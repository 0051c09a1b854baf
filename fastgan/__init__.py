"""fastgan: the 2014 GAN on MNIST, trained with fused Triton kernels (README.md).

`fastgan.load(RUN_OR_CHECKPOINT)` gives a trained generator as a torch.nn.Module
(fastgan.generator). It is imported on first use: `import fastgan.errors` stays free of torch.
The fused kernels are `fastgan.kernels` (in the repository, its top-level kernels/ folder).
"""

import importlib.util
import sys
from pathlib import Path

_CLONE_KERNELS = Path(__file__).resolve().parent.parent / "kernels"


class _CloneKernels:
    """Finds `fastgan.kernels` in a clone that was not pip-installed (PYTHONPATH=. or the working
    folder): there the kernels are the repository's kernels/, which an install maps into the
    package. Consulted only after the normal finders, so an installed package always wins."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "fastgan.kernels" or not (_CLONE_KERNELS / "__init__.py").is_file():
            return None
        return importlib.util.spec_from_file_location(name, _CLONE_KERNELS / "__init__.py",
                                                      submodule_search_locations=[str(_CLONE_KERNELS)])


if not (Path(__file__).resolve().parent / "kernels").is_dir():
    sys.meta_path.append(_CloneKernels)


def __getattr__(name):
    if name == "load":
        from .generator import load

        return load
    raise AttributeError(f"module 'fastgan' has no attribute {name!r}")
