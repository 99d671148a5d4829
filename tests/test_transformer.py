import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bigmodel_utils import transformer as tr  # noqa: E402

TEXT = "the cat sat on the mat. the dog sat on the log. " * 40


def small_model(vocab_size=12, **kw):
    cfg = dict(d_model=16, heads=2, layers=2, context=8, seed=0)
    cfg.update(kw)
    return tr.build_char_transformer(vocab_size, **cfg)


def test_load_python_docs_verified_and_refuses_other_files(tmp_path):
    text = tr.load_python_docs()
    assert len(text) > 400_000 and 'The "assert" statement' in text
    other = tmp_path / "topics.py"
    other.write_text("topics = {'a': 'b'}\n")
    with pytest.raises(tr.TextIntegrityError, match="3.11.7"):
        tr.load_python_docs(other)
    with pytest.raises(FileNotFoundError):
        tr.load_python_docs(tmp_path / "missing.py")


def test_char_vocab_round_trip_and_errors():
    v = tr.CharVocab.from_text("banana")
    assert v.chars == ("a", "b", "n") and len(v) == 3
    ids = v.encode("nab")
    assert ids.tolist() == [2, 0, 1] and v.decode(ids) == "nab"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        v.encode("bang")
    with pytest.raises(ValueError, match="ids must lie"):
        v.decode([3])
    with pytest.raises(ValueError, match="empty"):
        tr.CharVocab.from_text("")


def test_split_ids_contiguous_and_errors():
    a, b, c = tr.split_ids(np.arange(100), (0.8, 0.1, 0.1))
    assert (len(a), len(b), len(c)) == (80, 10, 10)
    assert np.array_equal(np.concatenate([a, b, c]), np.arange(100))
    for bad in [(0.5, 0.6), (1.0,), (0.9, 0.0, 0.1)]:
        with pytest.raises(ValueError, match="fractions"):
            tr.split_ids(np.arange(100), bad)
    with pytest.raises(ValueError, match="at least two"):
        tr.split_ids(np.arange(5), (0.9, 0.1))


def test_ngram_nll_known_values_and_errors():
    train = np.array([0, 1, 0, 1, 0, 1])
    assert tr.ngram_nll(train, train, 4, 0) == pytest.approx(math.log(4))
    # unigram with alpha 1: p(0) = p(1) = (3 + 1) / (6 + 4) = 0.4
    assert tr.ngram_nll(train, [0, 1], 4, 1, alpha=1.0) == pytest.approx(-math.log(0.4))
    # bigram: after 0 always 1 (2 of 2 times... 3 of 3), with tiny alpha nearly certain
    assert tr.ngram_nll(train, [0, 1, 0, 1], 2, 2, alpha=1e-9) == pytest.approx(0.0, abs=1e-6)
    assert tr.ngram_nll(train, [0, 1, 0], 2, 3, alpha=1e-9) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="order"):
        tr.ngram_nll(train, train, 2, 4)
    with pytest.raises(ValueError, match="alpha"):
        tr.ngram_nll(train, train, 2, 2, alpha=0)
    with pytest.raises(ValueError, match="outside"):
        tr.ngram_nll(train, [5, 1], 2, 1)
    with pytest.raises(ValueError, match="vocab_size"):
        tr.ngram_nll(train, train, 0, 1)
    with pytest.raises(ValueError, match="at least as long"):
        tr.ngram_nll(train, [1], 2, 2)


def test_causal_mask_and_attention_against_torch():
    m = tr.causal_mask(4)
    assert m.dtype == torch.bool and m.sum() == 6 and not m.diagonal().any() and m[0, 1]
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64) for _ in range(3))
    for mask in (None, tr.causal_mask(5)):
        out, w = tr.scaled_dot_product_attention(q, k, v, mask)
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else ~mask)
        assert torch.allclose(out, ref, atol=1e-12) and torch.allclose(w.sum(-1), torch.ones(2, 3, 5, dtype=torch.float64))
    _, w = tr.scaled_dot_product_attention(q, k, v, tr.causal_mask(5))
    assert (w[..., tr.causal_mask(5)] == 0).all()
    with pytest.raises(ValueError, match="boolean"):
        tr.scaled_dot_product_attention(q, k, v, torch.zeros(5, 5))
    with pytest.raises(ValueError, match="incompatible"):
        tr.scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="positive"):
        tr.causal_mask(0)


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_matches_torch(causal):
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=True).double()
    mine = tr.MultiHeadSelfAttention(16, 4).double()
    tr.copy_from_torch_mha(mine, ref)
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    y_ref, w_ref = ref(x, x, x, attn_mask=tr.causal_mask(7) if causal else None, need_weights=True,
                       average_attn_weights=False)
    y, w = mine(x, causal=causal, return_weights=True)
    assert torch.allclose(y, y_ref, atol=1e-12) and torch.allclose(w, w_ref, atol=1e-12)
    assert torch.equal(mine(x, causal=causal), y)


def test_multi_head_attention_errors():
    with pytest.raises(ValueError, match="divisible"):
        tr.MultiHeadSelfAttention(10, 3)
    mine = tr.MultiHeadSelfAttention(8, 2)
    with pytest.raises(TypeError, match="MultiheadAttention"):
        tr.copy_from_torch_mha(mine, torch.nn.Linear(8, 8))
    with pytest.raises(ValueError, match="differ"):
        tr.copy_from_torch_mha(mine, torch.nn.MultiheadAttention(8, 4))
    with pytest.raises(ValueError, match="packed"):
        tr.copy_from_torch_mha(mine, torch.nn.MultiheadAttention(8, 2, bias=False))


def test_sinusoidal_positions_values_rotation_and_errors():
    pe = tr.sinusoidal_positions(50, 8).double()
    assert pe.shape == (50, 8) and pe.abs().max() <= 1
    assert torch.allclose(pe[0, 0::2], torch.zeros(4, dtype=torch.float64)) and torch.allclose(pe[0, 1::2], torch.ones(4, dtype=torch.float64))
    # each (sin, cos) pair turns by a fixed angle per step: PE(p + 3) is a rotation of PE(p)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    c, s = torch.cos(3 * freq), torch.sin(3 * freq)
    rotated_sin = pe[:-3, 0::2] * c + pe[:-3, 1::2] * s
    assert torch.allclose(rotated_sin, pe[3:, 0::2], atol=1e-6)
    for bad in [(0, 8), (5, 7), (5, 0)]:
        with pytest.raises(ValueError):
            tr.sinusoidal_positions(*bad)


def test_influence_matrix_causal_and_errors():
    torch.manual_seed(0)
    attn = tr.MultiHeadSelfAttention(8, 2).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    causal = tr.influence_matrix(lambda z: attn(z, causal=True), x)
    full = tr.influence_matrix(lambda z: attn(z, causal=False), x)
    upper = np.triu(np.ones((6, 6), dtype=bool), 1)
    assert causal.shape == (6, 6) and (causal[upper] == 0).all() and (causal[~upper] > 0).all()
    assert (full > 0).all()
    with pytest.raises(ValueError, match="batch, T, d"):
        tr.influence_matrix(lambda z: z, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="fn must return"):
        tr.influence_matrix(lambda z: z.sum(-1), x)


def test_build_char_transformer_parameter_count_and_errors():
    V, d, L, T = 12, 16, 2, 8
    m = small_model(V)
    assert tr.count_parameters(m) == V * d + L * (12 * d * d + 13 * d) + 2 * d + d * V + V
    learned = small_model(V, positions="learned")
    assert tr.count_parameters(learned) == tr.count_parameters(m) + T * d
    assert m(torch.zeros(3, T, dtype=torch.long)).shape == (3, T, V)
    with pytest.raises(ValueError, match="exceeds the context"):
        m(torch.zeros(1, T + 1, dtype=torch.long))
    for bad in [dict(d_model=0), dict(positions="rotary"), dict(heads=3), dict(dropout=1.0)]:
        with pytest.raises(ValueError):
            small_model(V, **bad)


def test_model_is_causal_by_gradients():
    m = small_model().eval()
    x = m.embed_tokens(torch.tensor([[1, 2, 3, 4, 5, 6]]))
    infl = tr.influence_matrix(m.from_embeddings, x)
    assert (infl[np.triu_indices(6, 1)] == 0).all() and (np.diag(infl) > 0).all()
    bidir = tr.influence_matrix(lambda h: m.from_embeddings(h, causal=False), x)
    assert (bidir[np.triu_indices(6, 1)] > 0).all()


def test_sample_windows_shifted_and_errors():
    ids = np.arange(100)
    x, y = tr.sample_windows(ids, 10, 4, np.random.default_rng(0))
    assert x.shape == (4, 10) and torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y - x, torch.ones(4, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="longer than the context"):
        tr.sample_windows(np.arange(10), 10, 2, np.random.default_rng(0))


def test_evaluate_lm_scores_every_target_once():
    V = 12
    m = small_model(V)
    with torch.no_grad():  # a model that ignores its input: logits = head bias
        m.head.weight.zero_()
        m.head.bias.copy_(torch.linspace(-1, 1, V))
    ids = np.random.default_rng(0).integers(0, V, 53)
    logp = torch.log_softmax(m.head.bias.detach(), 0).numpy()
    expected = -logp[ids[1:]].mean()
    assert tr.evaluate_lm(m, ids) == pytest.approx(float(expected), rel=1e-6)
    assert tr.evaluate_lm(m, ids, batch_size=1) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="longer than the context"):
        tr.evaluate_lm(m, ids[:8])


def test_fit_lm_learns_and_validates_arguments():
    vocab = tr.CharVocab.from_text(TEXT)
    ids = vocab.encode(TEXT)
    train, val = ids[:1500], ids[1500:]
    m = small_model(len(vocab))
    before = tr.evaluate_lm(m, val)
    hist = tr.fit_lm(m, train, val, steps=60, batch_size=16, learning_rate=1e-2, warmup=5, eval_every=20,
                     eval_batches=2, progress=False)
    assert list(hist.columns) == ["step", "loss", "val_loss"] and hist["step"].tolist() == [20, 40, 60]
    assert tr.evaluate_lm(m, val) < before - 0.5
    with pytest.raises(ValueError, match="positive"):
        tr.fit_lm(m, train, val, steps=0)


def test_generate_deterministic_and_errors():
    vocab = tr.CharVocab.from_text(TEXT)
    m = small_model(len(vocab))
    a = tr.generate(m, vocab, "the ", 20, temperature=0.8, seed=3)
    assert len(a) == 20 and a == tr.generate(m, vocab, "the ", 20, temperature=0.8, seed=3)
    assert tr.generate(m, vocab, "the cat sat", 0) == ""
    with pytest.raises(ValueError, match="temperature"):
        tr.generate(m, vocab, "the", 5, temperature=0)
    with pytest.raises(ValueError, match="non-empty"):
        tr.generate(m, vocab, "", 5)
    with pytest.raises(ValueError, match="non-negative"):
        tr.generate(m, vocab, "the", -1)


def test_save_and_load_identical_logits(tmp_path):
    vocab = tr.CharVocab.from_text(TEXT)
    m = small_model(len(vocab), positions="learned")
    path = tr.save_model(m, vocab, tmp_path / "lm.pt")
    assert path.with_suffix(".json").is_file()
    m2, vocab2 = tr.load_model(path)
    x = torch.from_numpy(vocab.encode("the dog "))[None]
    m.eval()
    assert vocab2 == vocab and torch.equal(m(x), m2(x))
    with pytest.raises(ValueError, match="does not match"):
        tr.save_model(m, tr.CharVocab(("a", "b")), tmp_path / "x.pt")
    with pytest.raises(ValueError, match="build_char_transformer"):
        tr.save_model(torch.nn.Linear(2, 2), vocab, tmp_path / "y.pt")
    with pytest.raises(FileNotFoundError):
        tr.load_model(tmp_path / "missing.pt")


def test_torch_threads_restores_count_and_rejects_zero():
    before = torch.get_num_threads()
    with tr.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="at least 1"):
        tr.torch_threads(0)
