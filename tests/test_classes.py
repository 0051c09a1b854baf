"""fastgan.classes: a dataset's classes for --conditional, the one-hot label columns, and the
asked-for-class accuracy."""

import numpy as np
import pytest
import torch

from fastgan import classes
from fastgan.errors import FastganError


def test_builtin_datasets_are_named_and_npz_labels_by_value():
    labels = np.array([3, 0, 9, 3, 1, 2, 4, 5, 6, 7, 8])
    index, names = classes.classes_of("mnist", {"train_labels": labels})
    assert names == [str(d) for d in range(10)] and index.tolist() == labels.tolist() and index.dtype == np.int64
    _, names = classes.classes_of("fashion-mnist", {"train_labels": labels})
    assert names[0] == "T-shirt/top" and names[9] == "Ankle boot"
    index, names = classes.classes_of("mine.npz", {"train_labels": np.array([20, -5, 20, 7])})
    assert names == ["-5", "7", "20"] and index.tolist() == [2, 0, 2, 1]  # every class has images, numbered in order
    index, names = classes.classes_of("photos", {"train_labels": np.array([1, 0, 1]), "class_names": np.array(["cat", "dog"])})
    assert names == ["cat", "dog"] and index.tolist() == [1, 0, 1]  # a folder's classes: its subfolders


@pytest.mark.parametrize("arrays, message", [
    ({}, "--conditional needs labelled images and mine.npz has no labels"),
    ({"train_labels": np.array([4, 4, 4])}, "--conditional needs at least 2 classes; every image of mine.npz is of class 4"),
])
def test_unusable_labels_are_one_line(arrays, message):
    with pytest.raises(FastganError, match=message) as err:
        classes.classes_of("mine.npz", arrays)
    assert "\n" not in str(err.value)


def test_label_columns_follow_the_noise_and_the_images():
    z, labels = torch.rand(5, 100), torch.tensor([0, 2, 1, 2, 0])
    zc = classes.with_labels(z, labels, 3)
    assert zc.shape == (5, 103) and torch.equal(zc[:, :100], z)
    assert torch.equal(zc[:, 100:].argmax(1), labels) and torch.equal(zc[:, 100:].sum(1), torch.ones(5))
    assert classes.with_labels(z, None, 0) is z  # an unconditional G's input is the noise itself
    images = torch.rand(5, 784)
    xc = classes.with_labels(images, labels, 3)  # D's real rows, the same way
    assert torch.equal(xc[:, :784], images) and torch.equal(xc[:, 784:], zc[:, 100:])
    assert classes.n_classes({"G_W1": torch.empty(103, 8)}) == 3 and classes.n_classes({"G_W1": torch.empty(100, 8)}) == 0


def test_asked_accuracy_per_class():
    asked = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 1, 0, 2, 2, 2])
    got = classes.asked_accuracy(predicted, asked, 4)  # class 3 never asked for: 0
    assert got == {"cond_acc": 0.75, "cond_acc_classes": [0.5, 0.6667, 1.0, 0.0]}
