"""Measure what the GAN learns, with a small MNIST classifier trained by fastgan itself.

    fastgan evaluate CHECKPOINT [--samples 10000] [--repeats 1] [--json]

Metrics of N generated samples against the dataset's test set:
  fd           Fréchet distance between Gaussians fitted to the classifier's penultimate
               features (`fc1`: the 128 ReLU units before the logits); lower is better
  fd_floor     the same distance between 10,000 training images and the test set: what a
               perfect generator would reach (it is not 0: two finite samples differ)
  score        classifier score exp E_x KL(p(y|x) || p(y)); the MNIST test images give 9.75
               with the cached classifier (99.23% test accuracy, seed 0)
  class_kl     KL(predicted-class histogram || uniform): 0 when all ten digits are equally
               common, log 10 = 2.30 when every sample is one digit (mode collapse)
  classes      the predicted-class histogram (fractions)

The classifier (LeNet-style: two 5x5 conv + max-pool layers, fc1 128, fc2 10) trains on the
training set on first use — seeded, 4 epochs of Adam (1e-3, then 1e-4 for the last), seconds
on a GPU and about a minute on 2 CPU cores — and is cached beside the data with its test accuracy, which must reach 99% (MNIST; 88% for Fashion-MNIST). A corrupt,
foreign or differently shaped cache is rebuilt, never trusted.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .backends import pick_device
from .batcher import images_to_tensor
from .classes import with_labels
from .classifier import (
    ARCH,
    EPOCHS,
    MIN_CLASSIFIER_SIZE,
    accuracy,
    batched,
    cached_classifier,
    classifier_path,
    train_classifier,
)
from .cli import Help, command
from .data import default_data_dir, load_images
from .distance import frechet_distance, over_sets, sample_metrics
from .errors import FastganError
from .model import Z_DIM, generator

# The test accuracy a classifier must reach to be cached and trusted, per dataset: MNIST's
# reaches 99.2%; Fashion-MNIST is harder (this LeNet reached 89.7% in 4 epochs, 2026-12-02).
MIN_ACCURACY = {"mnist": 0.99, "fashion-mnist": 0.88}
FLOOR_SAMPLES = 10000
MAX_SAMPLES = 200_000  # generated on the device at once: 0.6 GB of images
MAX_REPEATS = 100


def get_classifier(arrays, dataset, data_dir, device, arch=ARCH, epochs=EPOCHS,
                   min_accuracy=None, log=print):
    """(classifier, record) from the cache beside the data, trained and cached if needed."""
    path = classifier_path(data_dir or default_data_dir(), dataset)
    min_accuracy = MIN_ACCURACY[dataset] if min_accuracy is None else min_accuracy

    def build():
        train_x = images_to_tensor(arrays["train_images"], device)
        train_y = torch.from_numpy(arrays["train_labels"].astype(np.int64)).to(device)
        test_x = images_to_tensor(arrays["test_images"], device)
        test_y = torch.from_numpy(arrays["test_labels"].astype(np.int64)).to(device)
        log(f"training the {dataset} classifier for the metrics (once; cached in {path}) ...")
        model = train_classifier(train_x, train_y, arch, epochs, log=log)
        acc = accuracy(model, test_x, test_y)
        if acc < min_accuracy:
            raise FastganError(f"the metrics classifier reached only {acc:.4f} test accuracy (< {min_accuracy}); "
                               "not cached")
        log(f"classifier test accuracy {acc:.4f}")
        with torch.no_grad():
            floor = frechet_distance(batched(model.features, train_x[:FLOOR_SAMPLES]), batched(model.features, test_x))
        return model, acc, floor

    return cached_classifier(path, arch, device, build, log)


# --- label-free: other images ---------------------------------------------------------------------

PCA_COMPONENTS = 64


class PCAFeatures:
    """Features for images without a classifier (your own data): the projection on the top
    principal components of the training images (up to 10,000 of them, seeded), a linear
    feature in which the Fréchet distance still compares means and covariances of pixels' main
    modes of variation. The reference set and the floor: two disjoint halves of those images."""

    def __init__(self, train_x, n_components=PCA_COMPONENTS, seed=0):
        gen = torch.Generator().manual_seed(seed)
        x = train_x[torch.randperm(len(train_x), generator=gen)[: 2 * FLOOR_SAMPLES].to(train_x.device)].double()
        self.mean = x.mean(0)
        k = max(1, min(n_components, len(x) - 1, x.shape[1]))
        _, _, v = torch.linalg.svd(x - self.mean, full_matrices=False)
        self.basis = v[:k].T
        half = len(x) // 2
        self.reference = self.features(x[:half])
        self.floor = frechet_distance(self.features(x[half:]), self.reference) if half > k else None

    def features(self, x):
        return ((x.double() - self.mean) @ self.basis).float()


def own_classifier(arrays, data_dir, device, arch=ARCH, epochs=EPOCHS, min_accuracy=0.0, log=print):
    """(classifier, its record, reference features) for your own labelled images: trained on a
    seeded 90% of them (its accuracy on the other 10% printed and cached), cached by the images'
    and labels' content beside the data (no accuracy is required of it: your labels may be hard);
    the reference features are those of up to 10,000 of the images, and the floor the distance
    between two halves of up to 20,000."""
    images, labels = arrays["train_images"], arrays["train_labels"]
    classes, y = np.unique(labels, return_inverse=True)
    c, s = images.shape[1:3]
    arch = {**arch, "channels": int(c), "size": int(s), "classes": len(classes)}
    key = hashlib.sha256(images.tobytes() + labels.astype(np.int64).tobytes()).hexdigest()[:16]
    path = Path(data_dir or default_data_dir()) / f"classifier-custom-{key}.pt"
    x = images_to_tensor(images, device)
    y = torch.from_numpy(y.astype(np.int64)).to(device)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0)).to(device)
    n_test = max(1, len(x) // 10)

    def build():
        log(f"training a classifier on the {len(classes)} labels of your images for the metrics (once; cached in "
            f"{path}) ...")
        model = train_classifier(x[perm[n_test:]], y[perm[n_test:]], arch, epochs, log=log)
        acc = accuracy(model, x[perm[:n_test]], y[perm[:n_test]])
        if acc < min_accuracy:
            raise FastganError(f"the metrics classifier reached only {acc:.4f} held-out accuracy (< {min_accuracy}); "
                               "not cached")
        with torch.no_grad():
            sample = batched(model.features, x[perm[: 2 * FLOOR_SAMPLES]])
        half = len(sample) // 2
        return model, acc, frechet_distance(sample[:half], sample[half:]) if half > 1 else None

    model, state = cached_classifier(path, arch, device, build, log)
    log(f"classifier accuracy on a held-out 10% of your images: {state['test_accuracy']:.4f}")
    with torch.no_grad():
        reference = batched(model.features, x[perm[:FLOOR_SAMPLES]])
    return model, state, reference


class Evaluator:
    """Holds the classifier and the test features; `__call__(params)` measures a generator.
    MNIST and Fashion-MNIST: the cached classifier and the test set. Your own images with labels
    (and a side of at least 16): a classifier trained on them (own_classifier). Without labels:
    PCAFeatures, the Fréchet distance and its floor only (`label_free`)."""

    def __init__(self, arrays, dataset, data_dir, device, n_samples=10000, seed=0, log=print, label_free=None,
                 classes=0, **classifier_kw):
        own = "test_labels" not in arrays and "train_labels" in arrays
        if label_free is None:
            label_free = "test_labels" not in arrays and not (
                own and arrays["train_images"].shape[-1] >= MIN_CLASSIFIER_SIZE)
        self.label_free = label_free
        if self.label_free:
            self.pca = PCAFeatures(images_to_tensor(arrays["train_images"], device))
            self.fd_floor, self.test_features = self.pca.floor, self.pca.reference
        elif own:
            self.model, record, self.test_features = own_classifier(arrays, data_dir, device, log=log,
                                                                    **classifier_kw)
            self.fd_floor = record["fd_floor"]
        else:
            self.model, record = get_classifier(arrays, dataset, data_dir, device, log=log, **classifier_kw)
            self.fd_floor = float(record["fd_floor"])
            with torch.no_grad():
                self.test_features = batched(self.model.features, images_to_tensor(arrays["test_images"], device))
        self.n_samples, self.classes, self.device = n_samples, classes, device
        self.asked = torch.arange(n_samples, device=device) % classes if classes else None  # C classes in turn
        self.seed = seed
        self.redraw(seed)

    def redraw(self, seed):
        """Draw the set of noise vectors every generator is measured on from `seed` (a run's
        measurements use the run's seed; `fastgan evaluate` seed 0, and 1, 2, ... for --repeats)."""
        gen = torch.Generator().manual_seed(seed + 4)
        z = torch.rand(self.n_samples, Z_DIM, generator=gen) * 2 - 1
        self.z = with_labels(z.to(self.device), self.asked, self.classes)

    def repeated(self, params, sets):
        """A generator measured on `sets` independent sets of noise (seeds 0..sets-1, set 0 the
        default one): each metric's mean, and the spread of the Fréchet distance, score and class
        KL (fastgan.distance.over_sets). Leaves its own set (its seed's) drawn again."""
        results = []
        for seed in range(sets):
            self.redraw(seed)
            results.append(self(params))
        self.redraw(self.seed)
        return over_sets(results)

    @torch.no_grad()
    def __call__(self, params):
        return self.many([params])[0]

    @torch.no_grad()
    def many(self, runs_params):
        """Measure several generators (a sweep's runs) with one classifier pass over all samples."""
        samples = torch.cat([batched(lambda z, p=p: generator(p, z), self.z) for p in runs_params])
        if self.label_free:
            return [{"fd": frechet_distance(self.pca.features(s), self.test_features), "fd_floor": self.fd_floor}
                    for s in samples.chunk(len(runs_params))]
        return sample_metrics(self.model, samples, self.test_features, self.fd_floor, len(runs_params), self.asked)


def _spread(result, key, digits):
    """A metric as printed: its value, and ± its standard deviation over sample sets if measured."""
    sd = result.get(key + "_sd")
    return f"{result[key]:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def main(argv=None):
    p = argparse.ArgumentParser(prog=command("evaluate"), formatter_class=Help,
                                description="Measure a fastgan checkpoint: Fréchet distance, classifier score, class coverage.")
    p.add_argument("checkpoint", help="a checkpoint file, or a run folder (its best.pt, else its newest checkpoint)")
    p.add_argument("--samples", type=int, default=10000, help="generated samples to measure")
    p.add_argument("--repeats", type=int, default=1,
                   help="measure this many independent sets of --samples samples (noise seeds 0, 1, ...; set 0 is the "
                        "default one) and give each metric's mean and standard deviation over them")
    p.add_argument("--data-dir", default=None, help="data folder (default: $FASTGAN_DATA or ~/.cache/fastgan)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--label-free", action="store_true",
                   help="the Fréchet distance on the training images' principal components, as for your own images "
                        "(on MNIST: to compare it with the classifier's)")
    p.add_argument("--raw", action="store_true", help="measure G's trained weights, not its EMA (runs with --g-ema or --g-ema-rel)")
    args = p.parse_args(argv)
    try:
        if not 2 <= args.samples <= MAX_SAMPLES:
            raise FastganError(f"--samples must be in 2..{MAX_SAMPLES:,}, got {args.samples:,}")
        if not 1 <= args.repeats <= MAX_REPEATS:
            raise FastganError(f"--repeats must be in 1..{MAX_REPEATS}, got {args.repeats}")
        path = checkpoint.resolve_best(args.checkpoint, "checkpoint")
        state = checkpoint.load(path)
        device = pick_device(args.device, log=lambda m: None)
        run_cfg = state.get("config", {})
        dataset = run_cfg.get("dataset", "mnist")
        say = (lambda m: print(m, file=sys.stderr))
        names = checkpoint.class_names(state)
        arrays, _ = load_images(dataset, args.data_dir, run_cfg.get("image_size"), run_cfg.get("channels"), log=say,
                                folder_classes=bool(names))
        evaluator = Evaluator(arrays, dataset, args.data_dir, device, n_samples=args.samples, log=say,
                              label_free=args.label_free or None, classes=len(names))
        params = {k: v.to(device) for k, v in checkpoint.g_weights(state, args.raw).items()}
        result = {"iter": state["iter"], **evaluator.repeated(params, args.repeats)}
    except FastganError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        weights = "" if "ema" not in state else (" (trained weights)" if args.raw else " (EMA weights)")
        print(f"checkpoint        {path} (iteration {result['iter']}){weights}")
        if "sets" in result:
            print(f"sample sets       {result['sets']} of {args.samples:,} samples each: the mean, ± the sets' standard deviation")
        if "score" not in result:  # your own images: no classifier
            floor = "—" if result["fd_floor"] is None else f"{result['fd_floor']:.3f}"
            print(f"Fréchet distance  {_spread(result, 'fd', 3)}   (label-free: on the training images' top principal "
                  f"components; floor {floor})")
            return 0
        print(f"Fréchet distance  {_spread(result, 'fd', 3)}   (train vs test floor {result['fd_floor']:.3f})")
        print(f"classifier score  {_spread(result, 'score', 3)}   (MNIST test images: 9.75)")
        print(f"class KL          {_spread(result, 'class_kl', 4)}  (0 = all ten digits equally often, 2.30 = one digit)")
        print("classes           " + " ".join(f"{i}:{f:.3f}" for i, f in enumerate(result["classes"])))
        if "cond_acc" in result:  # a conditional model: samples asked for each class, classified as it
            print(f"asked-for class   {result['cond_acc']:.4f}  (" + " ".join(
                f"{n}:{a:.3f}" for n, a in zip(names, result["cond_acc_classes"])) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
