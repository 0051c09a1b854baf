"""fastgan.distance: the metrics' formulas on hand-made inputs (closed forms), and their mean and
spread over sample sets."""

import math

import pytest
import torch

from fastgan import distance


def test_frechet_distance_zero_for_identical_sets():
    f = torch.randn(500, 16)
    # Exact arithmetic gives 0; float64 eigen-decompositions leave ~1e-12 of Tr(S) = 16.
    assert abs(distance.frechet_distance(f, f)) < 1e-8


def test_frechet_distance_closed_form_for_an_affine_copy():
    # f2 = a f1 + b has mean a mu + b and covariance a^2 S, so the distance is exactly
    # |(1 - a) mu - b|^2 + (1 - a)^2 Tr(S), with the sample mean and covariance of f1.
    f1 = torch.randn(400, 8, dtype=torch.float64) @ torch.randn(8, 8, dtype=torch.float64)
    a, b = 1.7, torch.linspace(-1, 1, 8, dtype=torch.float64)
    mu, cov = f1.mean(0), torch.cov(f1.T)
    want = ((1 - a) * mu - b).square().sum() + (1 - a) ** 2 * cov.trace()
    assert distance.frechet_distance(f1, a * f1 + b) == pytest.approx(want.item(), rel=1e-8)


def test_frechet_distance_grows_with_noise():
    f = torch.randn(2000, 12)
    d = [distance.frechet_distance(f, f + s * torch.randn_like(f)) for s in (0.1, 0.5, 2.0)]
    assert 0 < d[0] < d[1] < d[2]


def test_classifier_score_on_hand_made_predictions():
    confident_all_classes = torch.eye(10).repeat(10, 1)
    assert distance.classifier_score(confident_all_classes) == pytest.approx(10.0)
    one_class = torch.zeros(100, 10)
    one_class[:, 3] = 1
    assert distance.classifier_score(one_class) == pytest.approx(1.0)
    assert distance.classifier_score(torch.full((50, 10), 0.1)) == pytest.approx(1.0)
    half = torch.tensor([[0.5, 0.5] + [0.0] * 8, [0.0] * 8 + [0.5, 0.5]])  # KL = log 2 each
    assert distance.classifier_score(half) == pytest.approx(2.0)


def test_class_histogram():
    probs = torch.eye(10).repeat(3, 1)
    hist, kl = distance.class_histogram(probs)
    assert hist == pytest.approx([0.1] * 10) and kl == pytest.approx(0.0, abs=1e-12)
    one = torch.zeros(7, 10)
    one[:, 4] = 1
    hist, kl = distance.class_histogram(one)
    assert hist[4] == 1.0 and kl == pytest.approx(math.log(10))


def test_over_sets_means_each_number_and_spreads_the_three_metrics():
    sets = [{"fd": 10.0, "fd_floor": 2.0, "score": 8.0, "class_kl": 0.01, "classes": [0.5, 0.5]},
            {"fd": 12.0, "fd_floor": 2.0, "score": 9.0, "class_kl": 0.03, "classes": [0.25, 0.75]},
            {"fd": 14.0, "fd_floor": 2.0, "score": 7.0, "class_kl": 0.02, "classes": [0.75, 0.25]}]
    got = distance.over_sets(sets)
    assert got["sets"] == 3 and got["fd"] == 12.0 and got["fd_sd"] == pytest.approx(2.0) and got["fd_sets"] == [10.0, 12.0, 14.0]
    assert got["score"] == 8.0 and got["score_sd"] == pytest.approx(1.0) and got["class_kl"] == pytest.approx(0.02)
    assert got["fd_floor"] == 2.0 and "fd_floor_sd" not in got and got["classes"] == [0.5, 0.5]


def test_over_sets_of_one_set_is_that_set_and_keeps_a_missing_floor():
    one = {"fd": 3.0, "fd_floor": None}
    assert distance.over_sets([one]) == one and distance.over_sets([one]) is not one
    got = distance.over_sets([one, {"fd": 5.0, "fd_floor": None}])
    assert got["fd_floor"] is None and got["fd"] == 4.0 and got["fd_sd"] == pytest.approx(math.sqrt(2))
