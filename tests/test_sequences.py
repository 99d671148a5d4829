import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bigmodel_utils import sequences as seq  # noqa: E402


def test_adding_problem_structure_and_errors():
    x, y = seq.adding_problem(500, 20, seed=3)
    assert x.shape == (500, 20, 2) and y.shape == (500,) and x.dtype == np.float32
    assert (x[:, :, 1].sum(axis=1) == 2).all() and (x[:, :10, 1].sum(axis=1) == 1).all()
    assert np.allclose((x[:, :, 0] * x[:, :, 1]).sum(axis=1), y)
    x2, _ = seq.adding_problem(500, 20, seed=3)
    assert np.array_equal(x, x2)
    assert abs(np.mean((y - 1) ** 2) - seq.ADDING_BASELINE_MSE) < 0.03
    with pytest.raises(ValueError, match="n must"):
        seq.adding_problem(0, 10)
    with pytest.raises(ValueError, match="length"):
        seq.adding_problem(5, 1)


@pytest.mark.parametrize("cell,blocks", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_build_recurrent_parameter_counts(cell, blocks):
    m = seq.build_recurrent(cell, 3, 8, output_size=2, seed=0)
    assert seq.count_parameters(m) == blocks * (8 * (3 + 8) + 2 * 8) + 8 * 2 + 2
    assert m(torch.zeros(4, 5, 3)).shape == (4, 2)
    assert seq.build_recurrent(cell, 3, 8)(torch.zeros(4, 5, 3)).shape == (4,)


def test_build_recurrent_errors():
    with pytest.raises(ValueError, match="unknown cell"):
        seq.build_recurrent("transformer", 2, 4)
    with pytest.raises(ValueError, match="positive"):
        seq.build_recurrent("rnn", 0, 4)
    with pytest.raises(ValueError, match="LSTM only"):
        seq.build_recurrent("rnn", 2, 4, forget_bias=1.0)


def test_forget_bias_set_read_and_gate_values():
    m = seq.build_recurrent("lstm", 2, 6, forget_bias=2.5, seed=0)
    assert np.allclose(seq.forget_bias(m), 2.5)
    seq.set_forget_bias(m, -1.0)
    assert np.allclose(seq.forget_bias(m), -1.0)
    with torch.no_grad():
        for p in m.recurrent.parameters():
            p.zero_()
    seq.set_forget_bias(m, 3.0)
    f = seq.forget_gate_values(m, np.random.default_rng(0).random((2, 4, 2)))
    assert f.shape == (2, 4, 6) and np.allclose(f, 1 / (1 + np.exp(-3.0)), atol=1e-6)
    rnn = seq.build_recurrent("rnn", 2, 4)
    for fn in (seq.forget_bias, lambda m: seq.set_forget_bias(m, 1.0), lambda m: seq.forget_gate_values(m, np.zeros((1, 2, 2)))):
        with pytest.raises(ValueError, match="no LSTM"):
            fn(rnn)
    with pytest.raises(ValueError, match="batch, time, features"):
        seq.forget_gate_values(m, np.zeros((2, 2)))


def test_forget_gate_values_match_torch_lstm():
    m = seq.build_recurrent("lstm", 2, 5, seed=1)
    x = np.random.default_rng(1).random((3, 7, 2)).astype(np.float32)
    f = seq.forget_gate_values(m, x)
    lstm, sig = m.recurrent, lambda v: 1 / (1 + np.exp(-v))
    W, U = lstm.weight_ih_l0.detach().numpy(), lstm.weight_hh_l0.detach().numpy()
    b = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy()
    h, c, gates = np.zeros((3, 5)), np.zeros((3, 5)), []
    for t in range(7):
        i, fg, g, o = np.split(x[:, t] @ W.T + h @ U.T + b, 4, axis=1)
        c = sig(fg) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        gates.append(sig(fg))
    states, _ = lstm(torch.from_numpy(x))
    assert np.allclose(h, states[:, -1].detach().numpy(), atol=1e-5)  # the recursion is torch's LSTM
    assert f.shape == (3, 7, 5) and np.allclose(f, np.stack(gates, axis=1), atol=1e-5)


def test_fit_learns_regression_and_classification(capsys):
    x, y = seq.adding_problem(512, 6, seed=0)
    m = seq.build_recurrent("lstm", 2, 8, seed=0)
    hist = seq.fit(m, (x, y), (x[:64], y[:64]), task="regression", epochs=3, batch_size=32, learning_rate=1e-2,
                   evals_per_epoch=2, label="t")
    assert list(hist.columns) == ["epoch", "step", "loss", "val_loss"] and len(hist) == 6
    assert hist["val_loss"].iloc[-1] < hist["val_loss"].iloc[0]
    out = capsys.readouterr()
    assert "t: epoch 3/3: loss" in out.out and "batch" in out.err
    labels = (x[:, -1, 0] > 0.5).astype(np.int64)
    c = seq.build_recurrent("gru", 2, 8, output_size=2, seed=0)
    h2 = seq.fit(c, (x, labels), (x, labels), task="classification", epochs=3, batch_size=32, learning_rate=1e-2,
                 progress=False)
    assert "val_accuracy" in h2.columns and h2["val_accuracy"].iloc[-1] > 0.6
    assert capsys.readouterr().out == ""


def test_fit_and_evaluate_errors():
    x, y = seq.adding_problem(10, 4)
    m = seq.build_recurrent("rnn", 2, 3)
    with pytest.raises(ValueError, match="differ in length"):
        seq.fit(m, (x, y[:5]), (x, y), task="regression", epochs=1, batch_size=2)
    with pytest.raises(ValueError, match="positive"):
        seq.fit(m, (x, y), (x, y), task="regression", epochs=0, batch_size=2)
    with pytest.raises(ValueError, match="task"):
        seq.fit(m, (x, y), (x, y), task="ranking", epochs=1, batch_size=2)
    with pytest.raises(ValueError, match="task"):
        seq.evaluate(m, x, y, "ranking")
    with pytest.raises(ValueError, match="targets"):
        seq.evaluate(m, x, y[:3], "regression")
    assert set(seq.evaluate(m, x, y, "regression")) == {"loss"}


def test_predict_is_batched_and_deterministic():
    m = seq.build_recurrent("gru", 2, 4, seed=0)
    x, _ = seq.adding_problem(50, 5)
    a, b = seq.predict(m, x, batch_size=7), seq.predict(m, x, batch_size=50)
    assert a.shape == (50,) and np.allclose(a, b, atol=1e-6)


def test_gradient_through_time_and_decay():
    x, y = seq.adding_problem(16, 30, seed=0)
    rnn = seq.build_recurrent("rnn", 2, 8, seed=0)
    g = seq.gradient_through_time(rnn, x, y)
    assert g.shape == (30,) and (g >= 0).all() and g[-1] > g[0]
    lstm = seq.build_recurrent("lstm", 2, 8, output_size=3, seed=0)
    gc = seq.gradient_through_time(lstm, x, np.zeros(16, int), task="classification")
    assert gc.shape == (30,)
    with pytest.raises(ValueError, match="task"):
        seq.gradient_through_time(rnn, x, y, task="ranking")
    with pytest.raises(ValueError, match="batch, time, features"):
        seq.gradient_through_time(rnn, x[0], y)
    d = seq.gradient_decay(lambda: seq.build_recurrent("lstm", 2, 8, forget_bias=3.0, seed=0), [5, 40], n=8)
    r = seq.gradient_decay(lambda: seq.build_recurrent("rnn", 2, 8, seed=0), [5, 40], n=8)
    assert list(d.columns) == ["length", "first", "last", "ratio"]
    assert r["ratio"].iloc[1] < r["ratio"].iloc[0] and d["ratio"].iloc[1] > r["ratio"].iloc[1]
    with pytest.raises(ValueError, match="at least one"):
        seq.gradient_decay(lambda: rnn, [])


def test_mnist_rows():
    imgs = np.full((2, 28, 28), 255, np.uint8)
    rows = seq.mnist_rows(imgs)
    assert rows.shape == (2, 28, 28) and rows.dtype == np.float32 and rows.max() == 1.0
    with pytest.raises(ValueError, match="uint8"):
        seq.mnist_rows(imgs.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        seq.mnist_rows(imgs[0])


def test_save_and_load_model(tmp_path):
    m = seq.build_recurrent("lstm", 2, 4, output_size=3, forget_bias=1.0, seed=0)
    x, _ = seq.adding_problem(9, 6)
    path = seq.save_model(m, tmp_path / "m.pt")
    assert path.is_file() and (tmp_path / "m.json").is_file()
    back = seq.load_model(path)
    assert back.config == m.config and np.array_equal(seq.predict(m, x), seq.predict(back, x))
    with pytest.raises(FileNotFoundError):
        seq.load_model(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="build_recurrent"):
        seq.save_model(torch.nn.Linear(2, 2), tmp_path / "x.pt")


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with seq.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="at least 1"):
        seq.torch_threads(0)
