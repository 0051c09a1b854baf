"""How the label-free Fréchet distance (your own images: on the training images' top principal
components) ranks MNIST checkpoints against the classifier's distance:

    python docs/compare_distances.py runs/screen-A runs/screen-B     # run or sweep folders

Measures each run's numbered checkpoints with both (10,000 samples each, the same noise) and
prints a table and Spearman's rank correlation between the two distances.
"""

import json
import sys
from pathlib import Path

import torch

from fastgan import checkpoint
from fastgan.data import load_dataset
from fastgan.evaluate import Evaluator


def runs_in(folder):
    folder = Path(folder)
    if (folder / "sweep.json").is_file():
        return [folder / r["name"] for r in json.loads((folder / "sweep.json").read_text())["runs"]]
    return [folder]


def spearman(a, b):
    ra = torch.tensor(a).argsort().argsort().double()
    rb = torch.tensor(b).argsort().argsort().double()
    return torch.corrcoef(torch.stack([ra, rb]))[0, 1].item()


def main(folders):
    arrays = load_dataset("mnist")
    quiet = dict(log=lambda m: None)
    labelled = Evaluator(arrays, "mnist", None, "cpu", **quiet)
    label_free = Evaluator(arrays, "mnist", None, "cpu", label_free=True, **quiet)
    rows = []
    for run in (r for f in folders for r in runs_in(f)):
        for path in checkpoint.list_checkpoints(run / "checkpoints"):
            weights = checkpoint.g_weights(checkpoint.load(path))
            rows.append((f"{run.name}@{int(path.stem)}", labelled(weights)["fd"], label_free(weights)["fd"]))
    print("| checkpoint | classifier FD | label-free FD |\n|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.1f} | {b:.2f} |")
    rho = spearman([r[1] for r in rows], [r[2] for r in rows])
    print(f"\n{len(rows)} checkpoints; Spearman's rank correlation {rho:.3f}; label-free floor "
          f"{label_free.fd_floor:.3f}, classifier floor {labelled.fd_floor:.3f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
