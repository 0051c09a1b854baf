"""The sample metrics' formulas: the Fréchet distance between feature sets, the classifier score,
the class histogram, all of them for a batch of samples (sample_metrics), and their mean and
spread over several independent sample sets (over_sets).

One measurement of 10,000 samples is itself a sample: on this project's MNIST generators the
Fréchet distance moves by a standard deviation of 0.3–1.0 from one set of 10,000 noise vectors
to another (docs/recipes.md, "How precise is one measurement"); `fastgan evaluate --repeats N`
measures N sets and reports their mean and standard deviation."""

import math
import statistics

import torch

from .classes import asked_accuracy
from .classifier import batched


def frechet_distance(f1, f2):
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2) between Gaussians fitted to two feature sets."""
    f1, f2 = f1.double(), f2.double()
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = torch.cov(f1.T), torch.cov(f2.T)
    # Tr (S1 S2)^1/2 = Tr (S1^1/2 S2 S1^1/2)^1/2, a symmetric PSD matrix: eigh, no sqrtm needed.
    w, v = torch.linalg.eigh(s1)
    root1 = (v * w.clamp_min(0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(root1 @ s2 @ root1).clamp_min(0).sqrt().sum()
    return ((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * cross).item()


def classifier_score(probs):
    """exp E_x KL(p(y|x) || p(y)) from (N, 10) class probabilities."""
    probs = probs.double()
    p_y = probs.mean(0, keepdim=True)
    kl = (probs * (torch.log(probs.clamp_min(1e-30)) - torch.log(p_y.clamp_min(1e-30)))).sum(1).mean()
    return math.exp(kl.item())


def class_histogram(probs):
    """(fractions of samples per predicted class, KL of those fractions to uniform)."""
    counts = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double()
    h = counts / counts.sum()
    nz = h > 0
    kl = (h[nz] * torch.log(h[nz] * len(h))).sum().item()
    return h.tolist(), kl


@torch.no_grad()
def sample_metrics(model, samples, test_features, fd_floor, runs=1, asked=None):
    """The metrics of `samples` (runs * n images: each run's n in turn), one dict per run; the
    classifier sees all runs' samples in one batched pass. `asked`: the n classes a conditional
    model was asked for (fastgan.classes.asked_accuracy)."""
    model.eval()
    feats = batched(model.features, samples)
    probs = torch.softmax(model.fc2(feats), dim=1)
    out = []
    for f, p in zip(feats.chunk(runs), probs.chunk(runs)):
        hist, kl = class_histogram(p)
        out.append({"fd": frechet_distance(f, test_features), "fd_floor": fd_floor,
                    "score": classifier_score(p), "class_kl": kl, "classes": [round(x, 4) for x in hist],
                    **(asked_accuracy(p.argmax(1), asked, p.shape[1]) if asked is not None else {})})
    return out


SPREAD = ("fd", "score", "class_kl")  # the metrics over_sets gives a standard deviation of


def over_sets(results):
    """One result from the results of several independent sample sets of one generator: each
    number's mean over the sets (the class fractions too), and for SPREAD `<name>_sd`, the sets'
    sample standard deviation, and `<name>_sets`, the sets' values in order. One set: as it is."""
    if len(results) == 1:
        return dict(results[0])
    out = {"sets": len(results)}
    for key, first in results[0].items():
        values = [r[key] for r in results]
        if first is None or isinstance(first, str):
            out[key] = first
        elif isinstance(first, list):
            out[key] = [round(statistics.fmean(col), 4) for col in zip(*values)]
        else:
            out[key] = statistics.fmean(values)
            if key in SPREAD:
                out[key + "_sd"] = statistics.stdev(values)
                out[key + "_sets"] = values
    return out
