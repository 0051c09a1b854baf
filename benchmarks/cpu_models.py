"""Time per iteration of the CPU trainer (the launches' CPU twins) by model: hidden width and
conditioning, batch 128, one thread, the stable recipe's R1 and EMA, medians of 5 x 40 iterations
after 20 of warm-up, every model in one process (the same minute):

    python benchmarks/cpu_models.py 128,512,1024

The README's "Wider models, conditional models" table quotes it.
"""

import statistics
import sys
import time

import torch

from fastgan import classes, model
from fastgan.batcher import Batcher
from fastgan.cli import reproducible_products
from fastgan.graph import GraphTrainer
from fastgan.recipes import Hyper


def main(widths):
    reproducible_products()  # as fastgan train does
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    hyper = Hyper.recipe("stable")
    images = torch.rand(2000, model.X_DIM, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (2000,), generator=torch.Generator().manual_seed(1))
    for H in widths:
        for C in (0, 10):
            data = classes.with_labels(images, labels, C)
            trainer = GraphTrainer(model.init_params(0, "cpu", model.X_DIM, H, C), None, Batcher(data, 128, 0, C), 50,
                                   capture=False, hyper=hyper, twins=True)
            trainer.advance(20)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                trainer.advance(40)
                times.append((time.perf_counter() - t0) / 40 * 1e3)
            print(f"hidden {H}, conditional {bool(C)}: {statistics.median(times):.2f} ms per iteration", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main([int(w) for w in sys.argv[1].split(",")])
