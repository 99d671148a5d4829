import numpy as np
import pytest
import torch
from torch import nn

from bigmodel_utils import explain as ex
from bigmodel_utils.fastpath import ArticleCNN


@pytest.fixture
def net():
    torch.manual_seed(0)
    return ArticleCNN().eval()


@pytest.fixture
def x():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def test_saliency_shape_sign_and_matches_autograd(net, x):
    s = ex.saliency(net, x, [1, 2, 3])
    assert s.shape == x.shape and (s >= 0).all()
    xi = x[:1].clone().requires_grad_(True)
    net(xi)[0, 1].backward()
    assert torch.allclose(s[:1], xi.grad.abs(), atol=1e-6)


@pytest.mark.parametrize("bad_x, target", [(torch.rand(1, 28, 28), 0), (torch.rand(3, 1, 28, 28), [0, 1])])
def test_bad_inputs_are_refused(net, bad_x, target):
    with pytest.raises(ValueError):
        ex.saliency(net, bad_x, target)


def test_integrated_gradients_completeness(net, x):
    r = ex.integrated_gradients(net, x, 4, n_steps=64)
    assert r.attributions.shape == x.shape
    assert r.completeness_gap.shape == (3,)
    assert (r.relative_gap < 0.05).all()
    with pytest.raises(ValueError, match="n_steps"):
        ex.integrated_gradients(net, x, 4, n_steps=1)


def test_integrated_gradients_is_exact_for_a_linear_model():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x = torch.rand(2, 1, 28, 28)
    r = ex.integrated_gradients(lin, x, 3, n_steps=2)
    assert np.allclose(r.completeness_gap, 0, atol=1e-4)
    expected = x * lin[1].weight[3].view(1, 1, 28, 28)
    assert torch.allclose(r.attributions, expected.detach(), atol=1e-5)


def test_cascading_randomization_order_and_changes(net):
    steps = list(ex.cascading_randomization(net, seed=1))
    names = [n for n, _ in steps]
    assert names == ["trained", "head.3", "head.1", "features.6", "features.3", "features.0"]
    assert torch.equal(steps[0][1].head[3].weight, net.head[3].weight)
    assert not torch.equal(steps[1][1].head[3].weight, net.head[3].weight)
    assert torch.equal(steps[1][1].head[1].weight, net.head[1].weight)  # only the top layer so far
    assert torch.equal(net.head[3].weight, steps[0][1].head[3].weight)  # original untouched
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        list(ex.cascading_randomization(nn.ReLU()))


def test_similarity_measures():
    rng = np.random.default_rng(0)
    a = rng.random((4, 28, 28))
    assert np.allclose(ex.rank_correlation(a, a), 1) and np.allclose(ex.ssim(a, a), 1)
    b = rng.random((4, 28, 28))
    assert (np.abs(ex.rank_correlation(a, b)) < 0.2).all() and (ex.ssim(a, b) < 0.5).all()
    assert ex.rank_correlation(a[:1, None], a[:1, None]).shape == (1,)  # (N, C, H, W) accepted
    with pytest.raises(ValueError, match="shape"):
        ex.rank_correlation(a, b[:2])
    with pytest.raises(ValueError, match="shape"):
        ex.ssim(a[0, 0], a[0, 0])


def test_deletion_drop(net, x):
    attr = ex.saliency(net, x, 0)
    p0, ptop, prand = ex.deletion_drop(net, x, 0, attr, fraction=0.1)
    assert p0.shape == ptop.shape == prand.shape == (3,)
    assert ((0 <= ptop) & (ptop <= 1)).all()
    with pytest.raises(ValueError, match="fraction"):
        ex.deletion_drop(net, x, 0, attr, fraction=1.5)
    with pytest.raises(ValueError, match="differ in shape"):
        ex.deletion_drop(net, x, 0, attr[:1], fraction=0.1)


def test_randomization_similarity_table(net, x):
    df = ex.randomization_similarity(net, x, 0, {"saliency": ex.saliency}, seed=0)
    assert list(df.stage) == ["trained", "head.3", "head.1", "features.6", "features.3", "features.0"]
    assert df.rank_correlation.iloc[0] == pytest.approx(1.0) and df.ssim.iloc[0] == pytest.approx(1.0)
    assert df.rank_correlation.iloc[-1] < 0.9
    with pytest.raises(ValueError, match="at least one"):
        ex.randomization_similarity(net, x, 0, {})


def test_attribution_grid(x):
    import matplotlib.pyplot as plt

    fig = ex.attribution_grid(x, {"a": x, "signed": x - 0.5}, ["1", "2", "3"], "t")
    assert len(fig.axes) == 9
    plt.close(fig)
    with pytest.raises(ValueError, match="same length"):
        ex.attribution_grid(x, {"a": x[:2]}, ["1", "2", "3"], "t")
