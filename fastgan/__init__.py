"""fastgan: the 2014 GAN on MNIST, trained with fused Triton kernels (README.md).

`fastgan.load(RUN_OR_CHECKPOINT)` gives a trained generator as a torch.nn.Module
(fastgan.generator). It is imported on first use: `import fastgan.errors` stays free of torch.
"""


def __getattr__(name):
    if name == "load":
        from .generator import load

        return load
    raise AttributeError(f"module 'fastgan' has no attribute {name!r}")
