"""Tests of bigmodel_utils.scaling: counts, FLOP estimates, the power-law fit, the family loop."""
import numpy as np
import pytest

from bigmodel_utils import scaling, transformer as tr


@pytest.mark.parametrize("d_model,layers", [(16, 1), (32, 2), (48, 3)])
def test_parameter_formula_matches_the_model(d_model, layers):
    model = tr.build_char_transformer(50, d_model=d_model, heads=4, layers=layers, context=16, seed=0)
    assert scaling.non_embedding_parameters(model) == scaling.transformer_parameters(d_model, layers)
    assert scaling.non_embedding_parameters(model) < tr.count_parameters(model)


def test_parameter_errors():
    with pytest.raises(ValueError, match="positive"):
        scaling.transformer_parameters(0, 2)
    with pytest.raises(TypeError, match="torch module"):
        scaling.non_embedding_parameters(object())


def test_training_flops_is_six_n_d():
    assert scaling.training_flops(1_000, 2_000) == 12_000_000
    np.testing.assert_allclose(scaling.training_flops([1, 2], [10, 10]), [60, 120])
    # the published Chinchilla point: 70e9 parameters, 1.4e12 tokens -> about 5.9e23 FLOPs
    assert abs(scaling.training_flops(70e9, 1.4e12) / 5.88e23 - 1) < 0.01
    with pytest.raises(ValueError, match="positive"):
        scaling.training_flops(0, 10)
    with pytest.raises(ValueError, match="non-negative"):
        scaling.training_flops(10, -1)


def test_matmul_count_matches_torch_flop_counter():
    model = tr.build_char_transformer(40, d_model=32, heads=4, layers=2, context=16, seed=0)
    counted = scaling.measure_training_flops(model)
    assert counted == scaling.matmul_flops_per_token(32, 2, 16, 40)
    assert scaling.matmul_flops_per_token(32, 2, 16, 40, training=False) * 3 == counted
    # 6N ignores the head and attention, so it undercounts
    assert 6 * scaling.transformer_parameters(32, 2) < counted
    with pytest.raises(ValueError, match="positive"):
        scaling.matmul_flops_per_token(0, 2, 16, 40)


@pytest.mark.parametrize("alpha", [0.076, 0.34, 0.7])
def test_log_fit_recovers_known_exponent(alpha):
    n = np.logspace(3, 7, 8)
    fit = scaling.fit_power_law(n, 5.0 * n ** (-alpha))
    assert fit.method == "log-linear" and fit.c == 0
    assert abs(fit.alpha - alpha) < 1e-9 and abs(fit.a - 5.0) < 1e-6 and fit.r2 > 0.999999


def test_log_fit_with_noise_is_close():
    rng = np.random.default_rng(0)
    n = np.logspace(3, 6, 12)
    loss = 4.0 * n ** -0.2 * np.exp(rng.normal(0, 0.01, n.size))
    fit = scaling.fit_power_law(n, loss)
    assert abs(fit.alpha - 0.2) < 0.02 and fit.r2 > 0.95


def test_offset_fit_recovers_exponent_and_floor():
    n = np.logspace(3, 6, 7)
    fit = scaling.fit_power_law(n, 30.0 * n ** -0.34 + 1.69, offset=True)
    assert fit.method == "offset"
    assert abs(fit.alpha - 0.34) < 1e-4 and abs(fit.c - 1.69) < 1e-4 and abs(fit.a - 30) < 0.01
    np.testing.assert_allclose(fit.predict(n), 30.0 * n ** -0.34 + 1.69, rtol=1e-6)


def test_log_fit_is_biased_by_a_floor():
    # A floor flattens the curve: the fit without offset reports a smaller exponent.
    n = np.logspace(3, 6, 7)
    loss = 30.0 * n ** -0.34 + 1.69
    assert scaling.fit_power_law(n, loss).alpha < 0.34 / 2


@pytest.mark.parametrize("n,loss,match", [
    ([1, 2], [1, 0.5], "at least 3"),
    ([1, 2, 3], [1, 0.5], "one length"),
    ([[1, 2, 3]], [[1, 0.5, 0.3]], "1-D"),
    ([1, 2, -3], [1, 0.5, 0.3], "positive"),
    ([1, 2, 3], [1, 0.0, 0.3], "positive"),
    ([1, 2, 3], [1, np.nan, 0.3], "finite"),
    ([1, 1, 3], [1, 0.9, 0.3], "distinct"),
])
def test_fit_rejects_bad_input(n, loss, match):
    with pytest.raises(ValueError, match=match):
        scaling.fit_power_law(n, loss)


def test_offset_fit_needs_four_points():
    with pytest.raises(ValueError, match="at least 4"):
        scaling.fit_power_law([1, 2, 3], [1.0, 0.8, 0.7], offset=True)


def test_loss_ratio_per_doubling():
    assert abs(scaling.loss_ratio_per_doubling(0.076) - 0.9487) < 1e-4
    assert scaling.loss_ratio_per_doubling(0) == 1
    with pytest.raises(ValueError):
        scaling.loss_ratio_per_doubling(float("nan"))


def test_published_exponents_cite_their_sources():
    assert scaling.PUBLISHED_EXPONENTS["kaplan2020_alpha_N"]["value"] == 0.076
    assert scaling.PUBLISHED_EXPONENTS["hoffmann2022_alpha"]["value"] == 0.34
    assert {v["source"] for v in scaling.PUBLISHED_EXPONENTS.values()} == {"kaplan2020scaling",
                                                                            "hoffmann2022chinchilla"}


def test_train_family_tiny_and_frontier():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 12, 3_000)
    results, hist = scaling.train_family([8, 16], 12, ids[:2000], ids[2000:2500], ids[2500:], layers=1, heads=2,
                                         context=8, batch_size=4, steps=6, warmup=2, eval_every=3, progress=False)
    assert list(results.d_model) == [8, 16]
    assert (results.tokens == 6 * 4 * 8).all()
    np.testing.assert_allclose(results.flops_6ND, 6 * results.params * results.tokens)
    assert (results.flops_counted > results.flops_6ND).all() and np.isfinite(results.test_loss).all()
    assert set(hist.d_model) == {8, 16} and len(hist) == 4
    best = scaling.best_size_per_budget(hist, [hist.flops_6ND.max(), 1.0])
    assert len(best) == 1 and best.best_d_model.iloc[0] == 16  # only the larger model reaches that budget
    with pytest.raises(ValueError, match="divisible"):
        scaling.train_family([10], 12, ids, ids, ids, heads=4)
    with pytest.raises(ValueError, match="distinct"):
        scaling.train_family([8, 8], 12, ids, ids, ids, heads=2)
    with pytest.raises(ValueError, match="columns"):
        scaling.best_size_per_budget(hist.drop(columns="val_loss"), [1.0])
    with pytest.raises(ValueError, match="positive"):
        scaling.best_size_per_budget(hist, [-1.0])


def test_local_exponents():
    n = np.array([1e4, 1e3, 1e5])
    np.testing.assert_allclose(scaling.local_exponents(n, 2 * n ** -0.1), [0.1, 0.1])
    bent = scaling.local_exponents(n, 2 * n ** -0.1 + 1)  # a floor flattens the curve
    assert bent[1] < bent[0] < 0.1
    with pytest.raises(ValueError, match="at least 2"):
        scaling.local_exponents([1], [1])
