import math

import numpy as np
import pytest
import torch

from bigmodel_utils import vae


def _toy(n=64, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((n, 28, 28), dtype=np.uint8)
    img[:, 8:20, 10:18] = rng.integers(100, 256, size=(n, 12, 8), dtype=np.uint8)
    return img


def test_binarize_threshold_shape_and_errors():
    x = vae.binarize(_toy(4))
    assert x.shape == (4, 784) and x.dtype == np.float32 and set(np.unique(x)) <= {0.0, 1.0}
    img = np.zeros((1, 28, 28), np.uint8)
    img[0, 0, :3] = [127, 128, 255]
    assert vae.binarize(img)[0, :3].tolist() == [0.0, 1.0, 1.0]
    with pytest.raises(TypeError, match="uint8"):
        vae.binarize(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="28, 28"):
        vae.binarize(np.zeros((1, 784), np.uint8))
    with pytest.raises(ValueError):
        vae.binarize(img, threshold=300)


def test_parameter_count_and_shapes():
    torch.manual_seed(0)
    m = vae.VAE(latent_dim=3, hidden=20)
    assert vae.count_parameters(m) == vae.expected_parameters(3, 20)
    logits, mu, lv, z = m(torch.rand(5, 784))
    assert logits.shape == (5, 784) and mu.shape == lv.shape == z.shape == (5, 3)
    with pytest.raises(ValueError, match="latent codes"):
        m.decode_logits(torch.zeros(2, 4))
    with pytest.raises(ValueError):
        vae.VAE(latent_dim=0)


def test_analytic_kl_matches_torch_and_monte_carlo():
    mu = torch.tensor([[0.0, 0.0], [1.0, -0.5], [2.0, 0.3]], dtype=torch.float64)
    lv = torch.tensor([[0.0, 0.0], [0.3, -1.0], [-2.0, 1.0]], dtype=torch.float64)
    kl = vae.gaussian_kl(mu, lv)
    assert kl[0] == 0
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, torch.exp(0.5 * lv)),
                                            torch.distributions.Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(kl, ref)
    est, se = vae.kl_monte_carlo(mu, lv, samples=100_000, seed=1)
    assert (torch.abs(est - kl)[1:] < 4 * se[1:]).all() and torch.allclose(est[0], kl[0], atol=1e-12)
    with pytest.raises(ValueError):
        vae.gaussian_kl(mu, lv[:1])
    with pytest.raises(ValueError):
        vae.kl_monte_carlo(mu, lv, samples=1)


def test_reparameterize_is_differentiable_and_checks_shapes():
    mu = torch.tensor([1.0, -1.0], requires_grad=True)
    lv = torch.tensor([0.0, math.log(4.0)], requires_grad=True)
    eps = torch.tensor([0.5, 0.5])
    z = vae.reparameterize(mu, lv, eps=eps)
    assert torch.allclose(z, torch.tensor([1.5, 0.0]))
    z.sum().backward()
    assert torch.allclose(mu.grad, torch.ones(2)) and torch.allclose(lv.grad, 0.5 * torch.exp(0.5 * lv.detach()) * eps)
    with pytest.raises(ValueError):
        vae.reparameterize(mu, lv, eps=torch.zeros(3))
    with pytest.raises(ValueError):
        vae.reparameterize(mu, lv[:1])


def test_gradient_flow_check_distinguishes_detached_sampling():
    torch.manual_seed(0)
    m = vae.VAE(latent_dim=2, hidden=16)
    g = vae.gradient_flow_check(m, vae.binarize(_toy(8)))
    assert g["reparameterised"] > 0 and g["detached"] == 0.0


def test_likelihood_and_objectives():
    x = torch.tensor([[1.0, 0.0]])
    logits = torch.tensor([[0.0, 0.0]])
    assert torch.allclose(vae.bernoulli_log_likelihood(logits, x), torch.tensor([2 * math.log(0.5)]))
    assert torch.allclose(vae.article_mse(logits, x), torch.tensor([0.25]))
    with pytest.raises(ValueError):
        vae.bernoulli_log_likelihood(logits, x[:, :1])
    m = vae.VAE(2, 8)
    with pytest.raises(ValueError, match="unknown objective"):
        vae.objective(m, torch.zeros(1, 784), kind="mse")


def test_train_evaluate_save_reload_generate(tmp_path):
    x = vae.binarize(_toy(96))
    torch.manual_seed(0)
    m = vae.VAE(latent_dim=2, hidden=16)
    before = vae.evaluate(m, x[64:])
    res = vae.train_vae(m, x[:64], x[64:], epochs=3, batch_size=16, lr=1e-2, verbose=False)
    assert len(res.history) == 3 and res.history[-1]["val_elbo"] > before["elbo"]
    ev = vae.evaluate(m, x[64:])
    assert math.isclose(ev["elbo"], ev["rec"] - ev["kl"], rel_tol=1e-6) and ev["kl"] >= 0
    iw = vae.importance_sampled_log_likelihood(m, x[64:], k=50)
    assert iw >= ev["elbo"] - 2.0 and iw <= 0
    path = vae.save_vae(m, tmp_path / "vae.pt")
    m2 = vae.load_vae(path)
    z = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    assert np.array_equal(vae.decode(m, z), vae.decode(m2, z))
    assert vae.sample_prior(m2, 6).shape == (6, 28, 28)
    assert vae.manifold_grid(m2, n=3).shape == (84, 84)
    with pytest.raises(FileNotFoundError):
        vae.load_vae(tmp_path / "missing.pt")
    with pytest.raises(ValueError):
        vae.importance_sampled_log_likelihood(m, x, k=0)
    with pytest.raises(ValueError, match="binarize"):
        vae.evaluate(m, np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError):
        vae.train_vae(m, x, x, epochs=0)
    with pytest.raises(ValueError):
        vae.train_vae(m, x, x, epochs=1, kind="bogus")


def test_latent_statistics_and_errors():
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((5000, 3))
    stats = vae.latent_statistics(mu * 0.0 + mu, np.full_like(mu, -50.0))
    assert abs(stats["mean_sq_norm"] - 3) < 0.2 and stats["aggregate_kl"] < 0.01
    far = vae.latent_statistics(10 * mu + 5, np.full_like(mu, -10.0))
    assert far["aggregate_kl"] > 50 and far["posterior_kl"] > stats["posterior_kl"]
    with pytest.raises(ValueError):
        vae.latent_statistics(mu, mu[:, :2])


def test_manifold_tile_sample_errors():
    m = vae.VAE(3, 8)
    with pytest.raises(ValueError, match="latent_dim=2"):
        vae.manifold_grid(m)
    with pytest.raises(ValueError):
        vae.sample_prior(m, 0)
    assert vae.tile(np.zeros((6, 28, 28)), 3).shape == (56, 84)
    with pytest.raises(ValueError):
        vae.tile(np.zeros((5, 28, 28)), 3)


def test_classifier_and_sample_quality():
    rng = np.random.default_rng(0)
    x = np.zeros((200, 784), np.float32)
    y = np.arange(200) % 10
    for i, c in enumerate(y):
        x[i, c * 70:(c + 1) * 70] = rng.random(70) < 0.9
    clf = vae.train_classifier(x, y, epochs=5, batch_size=20)
    assert vae.classifier_accuracy(clf, x, y) > 0.9
    q = vae.sample_quality(clf, x)
    assert q["inception_score"] > 5 and q["class_counts"].sum() == 200
    with pytest.raises(ValueError):
        vae.sample_quality(clf, x * 2)
    with pytest.raises(ValueError):
        vae.train_classifier(x, y[:10])
