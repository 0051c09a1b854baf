"""The metrics' classifier (LeNet-style) and its cache: trained once on the data's labels, cached
beside the data with its record (held-out accuracy, FD floor), rebuilt with a notice when the cache
is corrupt, foreign or of another shape; never trusted unchecked. fastgan.evaluate uses it."""

from pathlib import Path

import torch
from torch import nn

from .checkpoint import atomic_torch_save

CLASSIFIER_FORMAT = "fastgan-classifier-1"
ARCH = {"c1": 32, "c2": 64, "fc": 128}
EPOCHS = 4


MIN_CLASSIFIER_SIZE = 16  # the two 5x5 conv + pool stages need images of at least 16 x 16


class Classifier(nn.Module):
    """LeNet-style: for MNIST's 28 x 28 grey and 10 classes by default; any C x S x S images
    (S >= MIN_CLASSIFIER_SIZE) and number of classes for your own labelled images."""

    def __init__(self, c1, c2, fc, channels=1, size=28, classes=10):
        super().__init__()
        self.image = (channels, size, size)
        side = ((size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(channels, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.fc1 = nn.Linear(c2 * side * side, fc)
        self.fc2 = nn.Linear(fc, classes)
        self.pool = nn.MaxPool2d(2)

    def features(self, x):
        """(N, X) in [0, 1] -> the penultimate `fc1` features (N, fc), after ReLU."""
        x = self.pool(torch.relu(self.conv1(x.reshape(-1, *self.image))))
        x = self.pool(torch.relu(self.conv2(x)))
        return torch.relu(self.fc1(x.flatten(1)))

    def forward(self, x):
        return self.fc2(self.features(x))


def batched(fn, x, batch=1000):
    return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


@torch.no_grad()
def accuracy(model, images, labels):
    model.eval()
    return (batched(model, images).argmax(1) == labels).float().mean().item()


def train_classifier(train_x, train_y, arch=ARCH, epochs=EPOCHS, seed=0, log=print):
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Classifier(**arch).to(train_x.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = len(train_x)
    for epoch in range(epochs):
        if epoch == epochs - 1 and epochs > 1:
            for group in opt.param_groups:  # a last epoch at a tenth of the rate settles the weights
                group["lr"] = 1e-4
        model.train()
        perm = torch.randperm(n, generator=gen).to(train_x.device)
        for i in range(0, n, 128):
            idx = perm[i : i + 128]
            loss = nn.functional.cross_entropy(model(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        log(f"classifier epoch {epoch + 1}/{epochs} done")
    return model.eval()


def classifier_path(data_dir, dataset):
    return Path(data_dir) / f"classifier-{dataset}.pt"


def load_classifier(path, arch, device):
    """The cached classifier and its record, or None (with the reason) when it can't be trusted."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CLASSIFIER_FORMAT or state.get("arch") != arch:
            return None, "it is not a fastgan classifier of this shape"
        model = Classifier(**arch)
        model.load_state_dict(state["state_dict"])
        floor = state["fd_floor"]  # None: too few of your images for a floor
        state["test_accuracy"], state["fd_floor"] = float(state["test_accuracy"]), None if floor is None else float(floor)
    except Exception as e:  # truncated, foreign pickle refused by weights_only, wrong keys or shapes
        return None, f"it is unreadable ({type(e).__name__})"
    return model.to(device).eval(), state


def cached_classifier(path, arch, device, build, log=print):
    """(classifier, record) from the cache at `path`, else from `build()` -> (trained classifier, its
    held-out accuracy, FD floor or None), saved there (temp file, fsync, rename)."""
    if path.is_file():
        model, state = load_classifier(path, arch, device)
        if model is not None:
            return model, state
        log(f"notice: rebuilding the classifier cache {path}: {state}")
    model, acc, floor = build()
    state = {"format": CLASSIFIER_FORMAT, "arch": dict(arch), "state_dict": model.state_dict(), "test_accuracy": acc,
             "fd_floor": floor}
    atomic_torch_save(path, state)
    return model, state
