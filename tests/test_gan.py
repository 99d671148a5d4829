import numpy as np
import pytest
import torch

from bigmodel_utils import gan


def digits(n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), np.uint8)
    x[:, 8:20, 12:16] = rng.integers(150, 256, (n, 12, 4))  # a bar, roughly a "1"
    return x


def test_preprocess_round_trip_and_range():
    x = digits(16)
    g = gan.to_gan_images(x)
    assert g.shape == (16, 1, 28, 28) and g.dtype == np.float32
    assert g.min() >= -1 and g.max() <= 1
    np.testing.assert_array_equal(gan.from_gan_images(g), x)
    np.testing.assert_array_equal(gan.from_gan_images(torch.from_numpy(g)), x)


def test_preprocess_rejects_bad_input():
    with pytest.raises(ValueError, match="load_mnist"):
        gan.to_gan_images(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="N, 1, H, W"):
        gan.from_gan_images(np.zeros((2, 28, 28)))


@pytest.mark.parametrize("latent_dim,width", [(32, 32), (8, 4)])
def test_builders_shapes_and_parameter_counts(latent_dim, width):
    G = gan.build_generator(latent_dim, width, seed=0)
    D = gan.build_discriminator(width, seed=0)
    assert gan.count_parameters(G) == gan.generator_params(latent_dim, width)
    assert gan.count_parameters(D) == gan.discriminator_params(width)
    G.eval()
    out = G(torch.randn(3, latent_dim))
    assert out.shape == (3, 1, 28, 28) and out.abs().max() <= 1
    assert D(out).shape == (3, 1)
    Dsn = gan.build_discriminator(width, spectral_norm=True)
    assert gan.count_parameters(Dsn) == gan.discriminator_params(width)
    table = gan.layer_table(G, (latent_dim,))
    assert table.parameters.sum() == gan.count_parameters(G) and table["output shape"].iloc[-1] == "1×28×28"
    assert gan.layer_table(Dsn, (1, 28, 28))["output shape"].iloc[-1] == "1"


def test_builders_reject_bad_sizes():
    with pytest.raises(ValueError, match="positive"):
        gan.build_generator(0)
    with pytest.raises(ValueError, match="positive"):
        gan.build_discriminator(0)


def test_losses_match_their_formulas():
    logits = torch.tensor([[-3.0], [0.0], [2.0]])
    d = torch.sigmoid(logits)
    torch.testing.assert_close(gan.generator_loss(logits, "non_saturating"), (-torch.log(d)).mean())
    torch.testing.assert_close(gan.generator_loss(logits, "saturating"), torch.log(1 - d).mean())
    real, fake = torch.tensor([[1.0], [2.0]]), torch.tensor([[-1.0], [0.5]])
    expected = (-torch.log(torch.sigmoid(real))).mean() + (-torch.log(1 - torch.sigmoid(fake))).mean()
    torch.testing.assert_close(gan.discriminator_loss(real, fake), expected)
    smoothed = gan.discriminator_loss(real, fake, real_label=0.9)
    assert smoothed > gan.discriminator_loss(real, fake)
    with pytest.raises(ValueError, match="real_label"):
        gan.discriminator_loss(real, fake, real_label=0.2)
    with pytest.raises(ValueError, match="non_saturating"):
        gan.generator_loss(logits, "least_squares")


def test_saturating_gradient_vanishes_when_discriminator_wins():
    logit = torch.tensor([[-8.0]], requires_grad=True)
    (g_sat,) = torch.autograd.grad(gan.generator_loss(logit, "saturating"), logit)
    (g_ns,) = torch.autograd.grad(gan.generator_loss(logit, "non_saturating"), logit)
    assert abs(g_sat.item()) < 1e-3 < 0.99 < abs(g_ns.item())


def test_train_gan_is_seeded_and_logs(capsys):
    x = digits(128)
    a = gan.train_gan(x, latent_dim=8, width=4, epochs=2, batch_size=32, n_fixed=5, log_every=2, progress=True)
    b = gan.train_gan(x, latent_dim=8, width=4, epochs=2, batch_size=32, n_fixed=5, log_every=2, progress=False)
    out = capsys.readouterr().out
    assert "epoch 2/2: D loss" in out
    h = a["history"]
    assert list(h.columns) == ["step", "epoch", "d_loss", "g_loss", "d_real", "d_fake"]
    assert h.step.iloc[-1] == 8 and h.epoch.iloc[-1] == 2 and np.isfinite(h[["d_loss", "g_loss"]].values).all()
    assert len(a["samples"]) == 2 and a["samples"][0].shape == (5, 28, 28) and a["samples"][0].dtype == np.uint8
    np.testing.assert_array_equal(a["samples"][-1], b["samples"][-1])
    pd_equal = (a["history"].values == b["history"].values).all()
    assert pd_equal


def test_train_gan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="choose one of"):
        gan.train_gan(digits(64), loss="wasserstein")
    with pytest.raises(ValueError, match="lower batch_size"):
        gan.train_gan(digits(16), batch_size=32)
    with pytest.raises(ValueError, match="positive"):
        gan.train_gan(digits(64), epochs=0)


def test_generate_and_noise():
    G = gan.build_generator(8, 4, seed=0)
    z = gan.latent_noise(6, 8, seed=3)
    torch.testing.assert_close(z, gan.latent_noise(6, 8, seed=3))
    imgs = gan.generate(G, z)
    assert imgs.shape == (6, 28, 28) and imgs.dtype == np.uint8
    assert gan.generate(G, 4).shape == (4, 28, 28)
    with pytest.raises(ValueError, match="noise of shape"):
        gan.generate(G, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="positive"):
        gan.latent_noise(0, 8)


def test_sample_quality_extremes():
    even = np.eye(10)[np.arange(100) % 10]
    q = gan.sample_quality(even)
    assert q["entropy_bits"] == pytest.approx(np.log2(10)) and q["score"] == pytest.approx(10, rel=1e-6)
    assert q["confidence"] == 1 and q["top_share"] == pytest.approx(0.1)
    collapsed = gan.sample_quality(np.eye(10)[np.zeros(50, int)])
    assert collapsed["entropy_bits"] == 0 and collapsed["top_share"] == 1 and collapsed["score"] == pytest.approx(1)
    unsure = gan.sample_quality(np.full((20, 10), 0.1))
    assert unsure["score"] == pytest.approx(1) and unsure["confidence"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="softmax"):
        gan.sample_quality(np.full((3, 10), 0.5))
    with pytest.raises(ValueError, match="non-empty"):
        gan.sample_quality(np.zeros((0, 10)))


def test_class_probabilities_are_distributions():
    from bigmodel_utils.fastpath import ArticleCNN

    torch.manual_seed(0)
    p = gan.class_probabilities(ArticleCNN(), digits(7), batch_size=3)
    assert p.shape == (7, 10) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_save_and_load_generator(tmp_path):
    G = gan.build_generator(8, 4, seed=1)
    z = gan.latent_noise(5, 8)
    path = gan.save_generator(G, tmp_path / "g.pt")
    assert path.with_suffix(".json").is_file()
    H = gan.load_generator(path)
    np.testing.assert_array_equal(gan.generate(G, z), gan.generate(H, z))
    with pytest.raises(ValueError, match="build_generator"):
        gan.save_generator(gan.build_discriminator(4), tmp_path / "d.pt")
    with pytest.raises(FileNotFoundError, match="save_generator"):
        gan.load_generator(tmp_path / "missing.pt")


def test_sample_grid():
    fig = gan.sample_grid([digits(4), digits(3)], "t", ncols=4, row_labels=["a", "b"])
    assert len(fig.axes) == 8
    with pytest.raises(ValueError, match="at least one"):
        gan.sample_grid([], "t")
