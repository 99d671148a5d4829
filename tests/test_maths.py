import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigmodel_utils import maths


def test_conv_output_size_matches_torch():
    for n, k, s, p, d in [(28, 3, 1, 0, 1), (13, 2, 2, 0, 1), (11, 3, 2, 1, 1), (9, 3, 1, 2, 2)]:
        y = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d)
        assert maths.conv_output_size(n, k, s, p, d) == y.shape[-1]
    assert maths.conv_output_size(13, 2, 2) == 6  # 2×2 pooling rounds down
    with pytest.raises(ValueError, match="does not fit"):
        maths.conv_output_size(2, 3)
    with pytest.raises(ValueError):
        maths.conv_output_size(0, 3)


def test_conv2d_reference_matches_torch():
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(2, 3, 7, 6, generator=g), torch.randn(4, 3, 3, 2, generator=g), torch.randn(4, generator=g)
    assert torch.allclose(maths.conv2d_reference(x, w, b), F.conv2d(x, w, b), atol=1e-5)
    with pytest.raises(ValueError):
        maths.conv2d_reference(x, torch.randn(4, 2, 3, 3))


def test_softmax_and_cross_entropy_grad():
    z = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    assert np.allclose(maths.softmax(z).sum(1), 1) and np.isfinite(maths.softmax(z)).all()
    y = np.eye(3)[[2, 0]]
    zt = torch.tensor(z[:1], requires_grad=True)
    F.cross_entropy(zt, torch.tensor([2]), reduction="sum").backward()
    assert np.allclose(maths.cross_entropy_grad(z[:1], y[:1]), zt.grad.numpy())
    with pytest.raises(ValueError):
        maths.cross_entropy_grad(z, y[:1])


def test_gaussian_kl_closed_form_and_monte_carlo():
    mu, lv = np.array([[0.0, 0.0], [1.0, -0.5]]), np.array([[0.0, 0.0], [0.3, -1.0]])
    kl = maths.gaussian_kl_to_standard(mu, lv)
    assert kl[0] == 0 and kl[1] > 0
    assert np.allclose(maths.gaussian_kl_monte_carlo(mu, lv, 200_000), kl, atol=0.02)
    tq = torch.distributions.Normal(torch.tensor(mu[1]), torch.exp(0.5 * torch.tensor(lv[1])))
    tp = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    assert math.isclose(torch.distributions.kl_divergence(tq, tp).sum().item(), kl[1], rel_tol=1e-9)
    with pytest.raises(ValueError):
        maths.gaussian_kl_to_standard(mu, lv[:1])
    with pytest.raises(ValueError):
        maths.gaussian_kl_monte_carlo(mu, lv, 0)


def test_optimal_discriminator_and_jensen_shannon():
    assert maths.optimal_discriminator(np.array([1.0, 0.0, 0.0]), np.array([1.0, 2.0, 0.0])).tolist() == [0.5, 0.0, 0.5]
    with pytest.raises(ValueError):
        maths.optimal_discriminator(np.array([-1.0]), np.array([1.0]))
    x = np.linspace(-10, 40, 50001)
    dx = x[1] - x[0]
    p = np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    assert maths.jensen_shannon(p, p, dx) == pytest.approx(0, abs=1e-12)
    q = np.exp(-0.5 * (x - 30) ** 2) / math.sqrt(2 * math.pi)  # practically disjoint support
    assert maths.jensen_shannon(p, q, dx) == pytest.approx(math.log(2), rel=1e-3)


def test_softmax_rejects_scalar_and_jensen_shannon_rejects_bad_input():
    with pytest.raises(ValueError):
        maths.softmax(np.float64(1.0))
    p = np.array([0.5, 0.5])
    with pytest.raises(ValueError):
        maths.jensen_shannon(p, np.array([1.0]), 1.0)
    with pytest.raises(ValueError):
        maths.jensen_shannon(p, p, 0.0)
    with pytest.raises(ValueError):
        maths.jensen_shannon(p, np.array([-0.5, 1.5]), 1.0)


def test_one_hot():
    assert maths.one_hot([5], 10).tolist() == [[0, 0, 0, 0, 0, 1, 0, 0, 0, 0]]
    assert maths.one_hot(np.array([0, 2]), 3).tolist() == [[1, 0, 0], [0, 0, 1]]
    for bad in ([10], [-1], [1.5]):
        with pytest.raises(ValueError, match="labels must be integers"):
            maths.one_hot(bad, 10)
    with pytest.raises(ValueError):
        maths.one_hot([0], 0)


def test_softmax_cross_entropy_matches_torch():
    z = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    labels = [0, 0, 1]
    ours = maths.softmax_cross_entropy(z, maths.one_hot(labels, 3))
    ref = F.cross_entropy(torch.tensor(z), torch.tensor(labels), reduction="none").numpy()
    assert np.allclose(ours, ref, rtol=1e-12, atol=1e-12) and np.isfinite(ours).all()
    assert ours[2] == pytest.approx(math.log(3))
    soft = np.array([[0.2, 0.3, 0.5]])  # soft labels: -sum y log p
    assert maths.softmax_cross_entropy(z[:1], soft)[0] == pytest.approx(-(soft * np.log(maths.softmax(z[:1]))).sum())
    with pytest.raises(ValueError):
        maths.softmax_cross_entropy(z, np.eye(3)[:2])
    with pytest.raises(ValueError):
        maths.softmax_cross_entropy(np.float64(1.0), np.float64(1.0))


def test_numerical_gradient():
    x = np.array([[0.3, -1.2], [2.0, 0.5]])
    grad = maths.numerical_gradient(lambda v: float(np.sum(v**3)), x)
    assert np.allclose(grad, 3 * x**2, atol=1e-8)
    assert x.tolist() == [[0.3, -1.2], [2.0, 0.5]]  # input untouched
    z, y = np.array([0.1, -0.4, 2.0]), np.array([0.0, 1.0, 0.0])
    fd = maths.numerical_gradient(lambda v: maths.softmax_cross_entropy(v, y), z)
    assert np.allclose(fd, maths.cross_entropy_grad(z, y), atol=1e-8)
    for h in (0.0, -1e-6, float("nan")):
        with pytest.raises(ValueError):
            maths.numerical_gradient(np.sum, x, h)


def test_side_lengths():
    assert maths.side_lengths(28, [(3, 1), (2, 2), (3, 1), (2, 2), (3, 1)]) == [28, 26, 13, 11, 5, 3]
    assert maths.side_lengths(7, []) == [7]
    with pytest.raises(ValueError, match="does not fit"):
        maths.side_lengths(4, [(3, 1), (3, 1)])
    with pytest.raises(ValueError):
        maths.side_lengths(8, [(3,)])
