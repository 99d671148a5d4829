"""Unit tests of bigmodel_utils.privacy (DP-SGD helpers). Small synthetic data keeps them fast."""
import math

import numpy as np
import pytest

from bigmodel_utils import privacy as pv


def test_model_shape_and_opacus_compatibility():
    import torch

    model = pv.build_model(0)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert pv.count_parameters(model) == 196 * 64 + 64 + 2 * 64 + 64 * 10 + 10
    assert pv.opacus_errors(model) == []
    assert any("BatchNorm" in e for e in pv.opacus_errors(pv.build_model(norm="batch")))
    with pytest.raises(ValueError, match="norm"):
        pv.build_model(norm="layer")


def test_noise_for_budget_meets_the_target_and_decreases_with_epsilon():
    q, epochs, delta = 256 / 60_000, 3, 1e-5
    sigmas = [pv.noise_for_budget(e, delta, q, epochs) for e in (0.5, 1.0, 8.0)]
    assert sigmas[0] > sigmas[1] > sigmas[2] > 0
    steps = int(epochs / q)
    eps = pv.epsilon_spent(sigmas[1], q, steps, delta)
    assert 0.98 <= eps <= 1.0 + 1e-9


def test_epsilon_spent_grows_with_steps():
    assert pv.epsilon_spent(1.0, 0.01, 100, 1e-5) < pv.epsilon_spent(1.0, 0.01, 1000, 1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epsilon=0.0, delta=1e-5, sample_rate=0.01, epochs=1), "epsilon"),
    (dict(epsilon=1.0, delta=1.5, sample_rate=0.01, epochs=1), "delta"),
    (dict(epsilon=1.0, delta=1e-5, sample_rate=0.0, epochs=1), "sample_rate"),
    (dict(epsilon=1.0, delta=1e-5, sample_rate=0.01, epochs=0), "epochs"),
])
def test_noise_for_budget_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pv.noise_for_budget(**kwargs)


def test_membership_auc_hand_computed():
    # members' losses 0.1, 0.3; non-members 0.2, 0.4: pairs (member lower?) = 0.1<0.2, 0.1<0.4, 0.3<0.4 -> 3/4
    assert pv.membership_auc([0.1, 0.3], [0.2, 0.4]) == pytest.approx(0.75)
    assert pv.membership_auc([1.0, 1.0], [1.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="non-empty"):
        pv.membership_auc([], [1.0])


def _toy_digits(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
    x[y == 1, :14] += 200  # class 1: bright top half
    return x, y


def test_train_private_and_non_private_runs():
    x, y = _toy_digits(600, 0)
    xt, yt = _toy_digits(200, 1)
    plain = pv.train(x, y, xt, yt, epsilon=None, epochs=1, batch_size=50, n_probe=100, log=None)
    assert math.isinf(plain.epsilon) and plain.noise_multiplier == 0 and plain.steps == 12
    assert plain.test_accuracy > 0.9
    dp = pv.train(x, y, xt, yt, epsilon=8.0, epochs=1, batch_size=50, n_probe=100, log=None)
    assert 0.98 * 8.0 <= dp.epsilon <= 8.0 + 1e-9 and dp.noise_multiplier > 0
    assert 0 <= dp.membership_auc <= 1 and set(dp.as_dict()) >= {"test_accuracy", "epsilon", "seconds"}


def test_train_rejects_bad_inputs():
    x, y = _toy_digits(20, 0)
    with pytest.raises(ValueError, match="28, 28"):
        pv.train(x[:, :10], y, x, y, epsilon=None, log=None)
    with pytest.raises(ValueError, match="labels"):
        pv.train(x, y[:5], x, y, epsilon=None, log=None)
    with pytest.raises(ValueError, match="epsilon"):
        pv.train(x, y, x, y, epsilon=-1.0, log=None)
