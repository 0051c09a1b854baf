"""Class-conditional generation (--conditional): a dataset's classes and the one-hot label columns
that condition both networks, as in the seed author's conditional GAN (wiseodd/generative-models,
conditional_gan): a one-hot y of C classes concatenated to z (G's input) and to x (D's input), so
G_W1 is (Z + C, H) and D_W1 (X + C, H), drawn as the seed draws any weight. Its last C rows are a
learned per-class row added to each first layer's pre-activation. Every backend trains this one
model: G's input is noise with the label's one-hot columns after it, D's the images (or G's
samples) with theirs."""

import numpy as np
import torch

from .errors import FastganError
from .model import Z_DIM

NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
}


def classes_of(dataset, arrays):
    """(each training image's class number 0..C-1 as int64, the C class names) for --conditional:
    MNIST's digits and Fashion-MNIST's classes by name, a folder's classes by their subfolders'
    names (fastgan.images: its "class_names"), an .npz's distinct `labels` values (named by the
    value, in increasing order); FastganError without labels or with one class."""
    labels = arrays.get("train_labels")
    if labels is None:
        raise FastganError(f"--conditional needs labelled images and {dataset} has no labels: give an .npz with "
                           "`labels` (one integer per image), or drop --conditional")
    values, index = np.unique(np.asarray(labels), return_inverse=True)
    names = [str(n) for n in arrays["class_names"]] if "class_names" in arrays else NAMES.get(dataset)
    names = [names[v] for v in values] if names is not None else [str(v) for v in values]
    if len(values) < 2:
        raise FastganError(f"--conditional needs at least 2 classes; every image of {dataset} is of class {names[0]}")
    return index.astype(np.int64).reshape(-1), names


def one_hot(labels, classes):
    """(n, classes) float32 one-hot rows of class numbers `labels` (a tensor, on its device)."""
    return torch.nn.functional.one_hot(labels, classes).float()


def with_labels(rows, labels, classes):
    """A network's input for C classes: rows (n, k) (G's noise, or D's images) with the one-hot
    columns of `labels` (n,) after them; the rows themselves when classes is 0 (unconditional)."""
    return torch.cat([rows, one_hot(labels.to(rows.device), classes)], dim=1) if classes else rows


def n_classes(params):
    """C of a run's parameters (0: unconditional), from G_W1's Z + C rows."""
    return params["G_W1"].shape[0] - Z_DIM


def asked_accuracy(predicted, asked, classes):
    """How often samples asked for each class were classified as it: {"cond_acc": over all,
    "cond_acc_classes": per class} (the classifier's class numbers are the model's)."""
    hits = (predicted == asked).double()
    per = torch.zeros(classes, dtype=torch.float64, device=hits.device).index_add_(0, asked, hits)
    per /= torch.bincount(asked, minlength=classes).clamp_min(1)
    return {"cond_acc": round(hits.mean().item(), 4), "cond_acc_classes": [round(x, 4) for x in per.tolist()]}
