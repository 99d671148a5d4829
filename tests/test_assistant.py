"""Unit tests of bigmodel_utils.assistant: the book cut into passages, the cached embedding index, the
support assistant (retrieval, then SmolLM2 answers or declines), its baselines, scoring rules and CLI.

The sentence encoder and SmolLM2 are loaded once for the module; the index is built from a handful of
hand-made passages (the whole book is only cut into passages, never embedded here), and the
answers are kept to a few tokens.
"""
import json
from pathlib import Path

import numpy as np
import pytest

from bigmodel_utils import assistant as A
from bigmodel_utils import llm
from bigmodel_utils import semantic_search as ss
from bigmodel_utils.semantic_search import Passage

# one worker loads the model once for all of these tests under pytest-xdist (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("llm")

PASSAGES = [
    Passage("llm#load-1", "chapters/llm_basics", "LLM basics: loading",
            "The function load_llm loads SmolLM2 offline from a verified GGUF file and checks its SHA-256 before "
            "reading it.", "chapters/llm_basics.ipynb"),
    Passage("gan#train-1", "chapters/gan", "GANs: training",
            "A generative adversarial network trains a generator against a discriminator until the fakes look "
            "real.", "chapters/gan.ipynb"),
    Passage("glossary#glossary-dropout", "glossary", "Glossary: dropout",
            "dropout: randomly zeroing activations during training to reduce overfitting.", "glossary.md"),
]
LOAD_QUESTION = "How does the book load SmolLM2 offline and check the file?"
FAR_QUESTION = "What is the best recipe for chocolate cake?"


@pytest.fixture(scope="module")
def encoder():
    from bigmodel_utils.devices import set_threads

    set_threads()
    return ss.load_encoder()


@pytest.fixture(scope="module")
def smol():
    from bigmodel_utils.devices import set_threads

    set_threads()  # BIGMODEL_THREADS or 2, as in the chapters
    return llm.load_llm()


@pytest.fixture(scope="module")
def index(encoder):
    return A.BookIndex(encoder, PASSAGES, use_cache=False)


def answer(text="It loads it offline.", page="chapters/llm_basics", declined=False, seconds=1.0, question="Q?"):
    return A.AssistantAnswer(question, text, page, None if page is None else f"{page}.ipynb", declined, 0.5,
                             seconds=seconds, reason="far" if declined else "")


# --------------------------------------------------------------------------- plain text with identifiers

def test_plain_text_keeps_identifiers_only_when_asked():
    md = "Call `load_llm` (the **Q4_1** file) or _emphasis_ and __bold__ with [a link](x.md)."
    assert ss.plain_text(md, keep_identifiers=True) == "Call load_llm (the Q4_1 file) or emphasis and bold with a link."
    assert ss.plain_text(md) == "Call loadllm (the Q41 file) or emphasis and bold with a link."  # unchanged default
    assert ss.plain_text("snake_case_ and _x", keep_identifiers=True) == "snake_case and x"
    assert ss.plain_text("{cite}`key` $x$ # Title {glue:text}`a::b`", keep_identifiers=True) == "x Title (a measured value)"


# --------------------------------------------------------------------------- the book as passages

def test_book_passages_of_the_real_book():
    passages = A.book_passages()
    pages = A.page_ids()
    assert len(passages) > 300
    assert all(len(p.text.split()) <= A.MAX_WORDS for p in passages)
    assert all(len(p.text.split()) >= 3 for p in passages)
    ids = [p.id for p in passages]
    assert len(set(ids)) == len(ids)
    assert {p.source for p in passages} == set(pages)  # every page read gives passages, and only those
    assert not set(pages) & set(A.EXCLUDED_PAGES) and {"faq", "glossary", "errata", "intro"} <= set(pages)
    assert not {"execution_report", "credits", "bibliography"} & set(pages)
    for p in passages:
        assert "import bigmodel_utils" not in p.text and "```" not in p.text and "{glue" not in p.text
        assert (ss.BOOK / p.link.split("#")[0]).is_file() and p.title
    assert any("load_llm" in p.text for p in passages)  # identifiers keep their underscores
    # chapter notebooks come first, in file order, then the Markdown pages
    chapters = sorted(f"chapters/{nb.stem}" for nb in (ss.BOOK / "chapters").glob("*.ipynb"))
    expected = [c for c in chapters if c not in A.EXCLUDED_PAGES]
    assert pages[:len(expected)] == expected
    assert pages[len(expected):] == [p for p in A.MARKDOWN_PAGES if (ss.BOOK / f"{p}.md").is_file()]


CHAPTER = """(chap-tiny)=
# Tiny chapter about kernels

Some intro words about the tiny chapter here, enough words to count as a passage.

## Loading the model

The function `load_llm` reads the verified file and caches the dequantised copy for later kernels.

```python
import bigmodel_utils
secret_code_line = 42
```

```{note}
Admonition text that must be kept because notes carry ideas worth retrieving later.
```

```{admonition} A tip
:class: tip
Tip text kept inside the admonition block, for readers who skim.
```

```{code-cell} python
hidden_directive_code()
```

```{math}
E = mc^2 hidden_math_line
```

| Setting | Value | Meaning |
|---|---|---|
| threads | two | the number of CPU threads every chapter uses by default |

## A long section

The first sentence of this long paragraph ends right here. The second sentence of it ends here.
And the third sentence of the paragraph ends just here.
"""

FAQ = """(faq)=
# FAQ

(faq-alpha)=
## What is alpha? (阿尔法)

Alpha is the **first** letter of the Greek alphabet, used for many things in statistics.

Short.
"""

GLOSSARY = """# Glossary

| English | Article's term | Definition | Where it is used |
|---|---|---|---|
| gradient descent | 梯度下降 | Moving the weights against the gradient, step by step, to lower the loss. | [x](x.md) |
"""


def notebook(*cells):
    return json.dumps({"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture()
def fake_book(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "tiny.ipynb").write_text(notebook(
        {"cell_type": "markdown", "metadata": {}, "source": CHAPTER.splitlines(True)},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": ["import bigmodel_utils\n", "print('hidden code cell text')"]}), encoding="utf-8")
    (tmp_path / "chapters" / "llm_prompting.ipynb").write_text(notebook(
        {"cell_type": "markdown", "metadata": {},
         "source": "# Prompting\n\nThis excluded chapter describes the evaluation questions in detail."}),
        encoding="utf-8")
    (tmp_path / "faq.md").write_text(FAQ, encoding="utf-8")
    (tmp_path / "glossary.md").write_text(GLOSSARY, encoding="utf-8")
    (tmp_path / "credits.md").write_text("# Credits\n\nPeople who helped with the book, thank you all.\n")
    return tmp_path


def test_book_passages_of_a_tiny_book(fake_book):
    passages = A.book_passages(fake_book)
    assert A.page_ids(fake_book) == ["chapters/tiny", "faq", "glossary"]  # excluded chapter and credits left out
    by_source = {}
    for p in passages:
        by_source.setdefault(p.source, []).append(p)
    assert set(by_source) == {"chapters/tiny", "faq", "glossary"}
    text = " ".join(p.text for p in by_source["chapters/tiny"])
    assert "Some intro words about the tiny chapter here" in text
    assert "The function load_llm reads the verified file" in text
    assert "Admonition text that must be kept" in text and "Tip text kept inside the admonition" in text
    assert "the number of CPU threads every chapter uses by default" in text  # a table row
    for hidden in ("secret_code_line", "import bigmodel_utils", "hidden code cell text", "hidden_directive_code",
                   "hidden_math_line", ":class:", "---", "(chap-tiny)=", "evaluation questions", "People who"):
        assert hidden not in " ".join(p.text for p in passages), hidden
    first = by_source["chapters/tiny"][0]
    assert (first.id, first.title, first.link) == ("chapters/tiny#top-1", "Tiny chapter about kernels",
                                                   "chapters/tiny.ipynb")
    loading = [p for p in by_source["chapters/tiny"] if p.id.startswith("chapters/tiny#loading-the-model-")]
    assert loading and all(p.title == "Tiny chapter about kernels: Loading the model" for p in loading)
    faq, = by_source["faq"]  # "Short." is too short to be a passage
    assert (faq.id, faq.title, faq.link) == ("faq#faq-alpha-0-0", "FAQ: What is alpha?", "faq.md#faq-alpha")
    assert faq.text == "Alpha is the first letter of the Greek alphabet, used for many things in statistics."
    gloss, = by_source["glossary"]
    assert (gloss.id, gloss.title, gloss.link) == ("glossary#glossary-gradient-descent", "Glossary: gradient descent",
                                                   "glossary.md")
    assert gloss.text.startswith("gradient descent (梯度下降): Moving the weights")
    assert len({p.id for p in passages}) == len(passages)


def test_book_passages_cut_long_paragraphs_at_sentence_ends(fake_book):
    long = [p for p in A.book_passages(fake_book, max_words=12) if p.id.startswith("chapters/tiny#a-long-section")]
    assert [p.text for p in long] == ["The first sentence of this long paragraph ends right here.",
                                      "The second sentence of it ends here.",
                                      "And the third sentence of the paragraph ends just here."]
    assert [p.id for p in long] == [f"chapters/tiny#a-long-section-{i}" for i in (1, 2, 3)]
    chapter = [p for p in A.book_passages(fake_book, max_words=10) if p.source != "glossary"]
    assert chapter and all(len(p.text.split()) <= 10 for p in chapter)


def test_every_passage_respects_max_words(fake_book):
    assert all(len(p.text.split()) <= 10 for p in A.book_passages(fake_book, max_words=10))


def test_headings_with_identifiers_keep_them(tmp_path):
    (tmp_path / "chapters").mkdir()
    md = "# Using `load_llm`\n\nThe loader reads one verified file and keeps a copy.\n\n## The `cache_dir` helper\n\n" \
         "It says where the copies are kept between kernel restarts."
    (tmp_path / "chapters" / "x.ipynb").write_text(notebook({"cell_type": "markdown", "metadata": {}, "source": md}))
    titles = [p.title for p in A.book_passages(tmp_path)]
    assert titles == ["Using load_llm", "Using load_llm: The cache_dir helper"]


@pytest.mark.parametrize("bad", [9, 0, 12.5, True, "120"])
def test_book_passages_refuses_a_bad_max_words(fake_book, bad):
    with pytest.raises(ValueError, match="max_words"):
        A.book_passages(fake_book, max_words=bad)


def test_a_folder_without_pages_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no book pages"):
        A.book_passages(tmp_path)
    with pytest.raises(FileNotFoundError, match="no book pages"):
        A.page_ids(str(tmp_path))


# --------------------------------------------------------------------------- the index

def test_search_ranks_the_matching_passage_first(index):
    for question, best in ((LOAD_QUESTION, "llm#load-1"), ("What does dropout do during training?",
                                                            "glossary#glossary-dropout"),
                           ("How is a GAN trained?", "gan#train-1")):
        found = index.search(question, k=3)
        assert found[0][0].id == best and len(found) == 3
        sims = [s for _, s in found]
        assert sims == sorted(sims, reverse=True) and all(-1 - 1e-5 <= s <= 1 + 1e-5 for s in sims)
    assert index.embeddings.shape == (3, 384) and index.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1, atol=1e-5)
    assert len(index.search(LOAD_QUESTION)) == A.DEFAULT_K and len(index.search(LOAD_QUESTION, 10)) == 3
    assert index.search(LOAD_QUESTION, 1)[0][1] > 0.5 > index.search(FAR_QUESTION, 1)[0][1]
    s = index.scores([LOAD_QUESTION, FAR_QUESTION])
    assert s.shape == (2, 3)
    np.testing.assert_allclose(s[0, 0], index.search(LOAD_QUESTION, 1)[0][1], atol=1e-5)


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "2"])
def test_search_refuses_a_bad_k(index, k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(LOAD_QUESTION, k)


def test_search_and_scores_refuse_bad_questions(index):
    with pytest.raises(ValueError, match="empty"):
        index.search("  ")
    with pytest.raises(ValueError, match="string"):
        index.search(None)
    for bad in ("one question", [], ["ok", ""], [3]):
        with pytest.raises(ValueError, match="non-empty list"):
            index.scores(bad)


def test_an_index_needs_passages(encoder):
    with pytest.raises(ValueError, match="no passages"):
        A.BookIndex(encoder, [], use_cache=False)


class CountingEncoder:
    """A stand-in for the sentence encoder: word-hash embeddings, counting the texts it encodes."""

    max_seq_length = 256

    def __init__(self):
        self.encoded = 0

    def encode(self, texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False):
        self.encoded += len(texts)
        out = np.zeros((len(texts), 16))
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, sum(map(ord, w)) % 16] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_the_embeddings_are_cached_and_a_corrupt_cache_is_rebuilt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path))
    enc = CountingEncoder()
    first = A.BookIndex(enc, PASSAGES)
    assert enc.encoded == 3 and first.cache_path.parent == tmp_path and first.cache_path.is_file()
    assert first.cache_path.name.startswith("assistant-index-") and first.cache_path.suffix == ".npy"
    second = A.BookIndex(enc, PASSAGES)
    assert enc.encoded == 3  # read from the cache file, nothing embedded again
    assert second.cache_path == first.cache_path
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    other = A.BookIndex(enc, PASSAGES[:2])  # other passages: another key, another file
    assert enc.encoded == 5 and other.cache_path != first.cache_path
    capsys.readouterr()
    first.cache_path.write_bytes(b"not an npy file")
    rebuilt = A.BookIndex(enc, PASSAGES)
    assert enc.encoded == 8 and "corrupt" in capsys.readouterr().err
    np.testing.assert_allclose(rebuilt.embeddings, first.embeddings, atol=1e-6)
    A.BookIndex(enc, PASSAGES)
    assert enc.encoded == 8  # the rebuilt cache is sound again
    A.BookIndex(enc, PASSAGES, use_cache=False)
    assert enc.encoded == 11


# --------------------------------------------------------------------------- answering

def test_context_prompt_numbers_the_passages_then_asks():
    found = [(PASSAGES[0], 0.7), (PASSAGES[2], 0.4)]
    text = A.context_prompt("  What is dropout?  ", found)
    assert text.startswith("Context:\n[1] (LLM basics: loading)\nThe function load_llm")
    assert text.index("[1] (LLM basics") < text.index("[2] (Glossary: dropout)") < text.index(
        "Question: What is dropout?\nAnswer in one or two sentences.")
    with pytest.raises(ValueError, match="empty"):
        A.context_prompt("", found)


def test_attribute_picks_the_passage_sharing_words():
    found = [(p, 0.5) for p in PASSAGES]
    assert A.attribute("Dropout zeroes activations randomly while training.", found) == 2
    assert A.attribute("A generator trains against a discriminator.", found) == 1
    assert A.attribute("It checks the SHA-256 of the GGUF file.", found) == 0
    assert A.attribute("Nothing in common here.", found[1:]) == 0  # ties: the better retrieved
    with pytest.raises(ValueError, match="no passages"):
        A.attribute("anything", [])


def test_llm_declined_and_tidy():
    assert A.llm_declined("I don't know.") and A.llm_declined("") and not A.llm_declined("It uses a KV cache.")
    assert A._tidy("  Paris.  ") == "Paris." and A._tidy("It loads the model from") == "It loads the model from …"
    assert A._tidy("") == ""


def test_assistant_refuses_bad_settings(index, smol):
    tokenizer, model = smol
    for kwargs, message in ((dict(k=0), "k must"), (dict(k=True), "k must"), (dict(min_score=1.5), "min_score"),
                            (dict(min_score="0.4"), "min_score")):
        with pytest.raises(ValueError, match=message):
            A.SupportAssistant(index, tokenizer, model, **kwargs)


def test_a_question_far_from_every_passage_is_declined_without_generation(index, smol, monkeypatch):
    tokenizer, model = smol

    def no_generation(*args, **kwargs):
        raise AssertionError("the LLM must not be asked")

    monkeypatch.setattr(llm, "generate", no_generation)
    got = A.SupportAssistant(index, tokenizer, model).ask(FAR_QUESTION)
    assert isinstance(got, A.AssistantAnswer) and got.declined and got.page is None and got.link is None
    assert got.text == "" and got.score < A.DEFAULT_MIN_SCORE and "close enough" in got.reason
    assert len(got.passages) == A.DEFAULT_K and got.seconds >= 0
    assert "I don't know" in got.render() and "*I don't know*" in got._repr_markdown_()


def test_a_matching_question_is_answered_and_cites_the_passage_page(index, smol):
    tokenizer, model = smol
    got = A.SupportAssistant(index, tokenizer, model, k=1, max_new_tokens=16).ask(LOAD_QUESTION)
    assert not got.declined, got.text
    assert got.text and got.page == "chapters/llm_basics" and got.link == "chapters/llm_basics.ipynb"
    assert got.score >= A.DEFAULT_MIN_SCORE and [p.id for p, _ in got.passages] == ["llm#load-1"]
    assert "(source: book/chapters/llm_basics.ipynb; similarity" in got.render()
    assert "*Source:* `book/chapters/llm_basics.ipynb`" in got._repr_markdown_()


def test_the_cited_page_is_the_passage_the_answer_draws_on(index, smol, monkeypatch):
    tokenizer, model = smol
    seen = {}

    def fake_generate(model_, tokenizer_, ids, max_new_tokens, **kwargs):
        seen["prompt"] = tokenizer_.decode(ids[0])
        return llm.Generation("Randomly zeroing activations reduces overfitting", [], ids.shape[1], 0.0)

    monkeypatch.setattr(llm, "generate", fake_generate)
    got = A.SupportAssistant(index, tokenizer, model, k=3, min_score=-1).ask("What does dropout do?")
    assert got.page == "glossary" and got.link == "glossary.md" and not got.declined
    assert got.text == "Randomly zeroing activations reduces overfitting …"  # cut-off answers are marked
    assert A.SYSTEM in seen["prompt"] and "[3] (" in seen["prompt"]


def test_an_answer_that_declines_is_reported_as_declined(index, smol, monkeypatch):
    tokenizer, model = smol
    monkeypatch.setattr(llm, "generate", lambda m, t, ids, n, **kw: llm.Generation("I don't know.", [], 1, 0.0))
    got = A.SupportAssistant(index, tokenizer, model).ask(LOAD_QUESTION)
    assert got.declined and got.page is None and got.text == "I don't know." and "says the model" in got.reason


def test_ask_refuses_empty_and_non_string_questions(index, smol):
    tokenizer, model = smol
    assistant = A.SupportAssistant(index, tokenizer, model)
    for bad, message in (("", "empty"), ("  \n ", "empty"), (None, "string"), (["a question"], "string")):
        with pytest.raises(ValueError, match=message):
            assistant.ask(bad)


def test_a_question_too_long_for_the_context_window_is_refused(index, smol):
    tokenizer, model = smol
    assistant = A.SupportAssistant(index, tokenizer, model)
    long = " ".join([LOAD_QUESTION] * 800)  # about 10,000 tokens; still close to the passage
    with pytest.raises(ValueError, match="context window 8,192") as err:
        assistant.ask(long)
    assert "Shorten the question" in str(err.value)
    with pytest.raises(ValueError, match="context window"):
        assistant.prompt_ids(long, [(PASSAGES[0], 0.9)])


def test_prompt_ids_drop_passages_from_the_end_until_it_fits(index, smol):
    tokenizer, model = smol
    assistant = A.SupportAssistant(index, tokenizer, model)
    big = [(Passage(f"big{i}", "faq", f"Big {i}", "word " * 4500, "faq.md"), 0.9 - i / 10) for i in range(3)]
    ids, used = assistant.prompt_ids(LOAD_QUESTION, big)
    assert [p.id for p, _ in used] == ["big0"] and ids.shape[1] <= llm.context_length(model) - assistant.max_new_tokens
    ids, used = assistant.prompt_ids(LOAD_QUESTION, [(p, 0.5) for p in PASSAGES])
    assert len(used) == 3 and ids.shape[0] == 1


def test_retrieval_only_answers_with_the_best_passage_or_declines(index):
    got = A.retrieval_only(index, "What does dropout do?")
    assert isinstance(got, A.AssistantAnswer) and not got.declined
    assert (got.text, got.page, got.link) == (PASSAGES[2].text, "glossary", "glossary.md")
    far = A.retrieval_only(index, FAR_QUESTION)
    assert far.declined and far.page is None and far.text == "" and "<" in far.reason
    assert not A.retrieval_only(index, FAR_QUESTION, min_score=-1).declined
    with pytest.raises(ValueError, match="empty"):
        A.retrieval_only(index, " ")


def test_closed_book_answers_without_citing(smol):
    tokenizer, model = smol
    got = A.closed_book(tokenizer, model, "What is the capital of France?", max_new_tokens=8)
    assert isinstance(got, A.AssistantAnswer) and got.page is None and got.link is None and got.passages == []
    assert "Paris" in got.text and not got.declined and np.isnan(got.score)
    with pytest.raises(ValueError, match="string"):
        A.closed_book(tokenizer, model, 42)


# --------------------------------------------------------------------------- scoring

ANSWERABLE = {"id": "sq1", "answerable": True, "pages": ["chapters/llm_basics", "faq"],
              "key_facts": [["sha-256", "sha256"], ["offline"]]}
UNANSWERABLE = {"id": "sq2", "answerable": False, "pages": [], "key_facts": []}


def test_score_answer_rules():
    good = A.score_answer(ANSWERABLE, answer("It checks the SHA-256 and loads it offline.", "faq", seconds=2.0))
    assert good == {"id": "sq1", "answerable": True, "declined": False, "correct": True, "citation_correct": True,
                    "seconds": 2.0, "words": 8}
    half = A.score_answer(ANSWERABLE, answer("It checks the SHA256.", "chapters/gan"))
    assert not half["correct"] and half["citation_correct"] is False  # one fact missing, another page
    declined = A.score_answer(ANSWERABLE, answer("sha256 offline", None, declined=True))
    assert not declined["correct"] and declined["citation_correct"] is False and declined["declined"]
    assert A.score_answer(UNANSWERABLE, answer("", None, declined=True))["correct"]
    wrong = A.score_answer(UNANSWERABLE, answer("It uses RLHF.", "faq"))
    assert not wrong["correct"] and wrong["citation_correct"] is None
    assert A.score_answer({"id": "x", "pages": ["faq"], "key_facts": [["a"]]}, answer("a", "faq"))["answerable"]


def test_summarise_rates_on_hand_made_records():
    records = [
        {"id": "a", "answerable": True, "declined": False, "correct": True, "citation_correct": True, "seconds": 1.0},
        {"id": "b", "answerable": True, "declined": False, "correct": False, "citation_correct": False, "seconds": 2.0},
        {"id": "c", "answerable": True, "declined": True, "correct": False, "citation_correct": False, "seconds": 3.0},
        {"id": "d", "answerable": False, "declined": True, "correct": True, "citation_correct": None, "seconds": 4.0},
        {"id": "e", "answerable": False, "declined": False, "correct": False, "citation_correct": None, "seconds": 10.0},
    ]
    s = A.summarise(records)
    assert s["answer correct"] == pytest.approx(1 / 3) and s["citation correct"] == pytest.approx(1 / 2)
    assert s["correct declines"] == pytest.approx(1 / 2) and s["false declines"] == pytest.approx(1 / 3)
    assert s["median seconds"] == 3.0 and (s["n answerable"], s["n unanswerable"]) == (3, 2)
    only = A.summarise(records[3:])
    assert np.isnan(only["answer correct"]) and np.isnan(only["citation correct"]) and only["n answerable"] == 0
    scored = [A.score_answer(ANSWERABLE, answer("SHA-256, offline.", "faq")),
              A.score_answer(UNANSWERABLE, answer("", None, declined=True))]
    assert A.summarise(scored)["answer correct"] == 1.0 == A.summarise(scored)["correct declines"]
    with pytest.raises(ValueError, match="no scored answers"):
        A.summarise([])


# --------------------------------------------------------------------------- ask() and the command line

def test_ask_builds_the_default_assistant_once(encoder, smol, tmp_path, monkeypatch):
    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(A, "book_passages", lambda *a, **k: PASSAGES)  # not the whole book
    monkeypatch.setattr(ss, "load_encoder", lambda device="cpu", verify=True: encoder)
    A.default_assistant.cache_clear()
    try:
        far = A.ask(FAR_QUESTION)
        assert far.declined and far.page is None
        assistant = A.default_assistant("cpu")
        assert assistant is A.default_assistant("cpu") and assistant.index.passages == PASSAGES
        assert (assistant.k, assistant.min_score, assistant.max_new_tokens) == (
            A.DEFAULT_K, A.DEFAULT_MIN_SCORE, A.DEFAULT_MAX_NEW_TOKENS)
        assert assistant.model is smol[1] and list(tmp_path.glob("assistant-index-*.npy"))
        with pytest.raises(ValueError, match="empty"):
            A.ask("")
    finally:
        A.default_assistant.cache_clear()


def test_main_prints_the_answer_as_json(monkeypatch, capsys):
    calls = []

    def fake_ask(question, device="cpu"):
        calls.append((question, device))
        return A.AssistantAnswer(question, "It loads it offline.", "chapters/llm_basics", "chapters/llm_basics.ipynb",
                                 False, 0.654321, seconds=1.234)

    monkeypatch.setattr(A, "ask", fake_ask)
    assert A.main(["--json", "How", "is", "the model loaded?"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert calls == [("How is the model loaded?", "cpu")]
    assert out == {"question": "How is the model loaded?", "answer": "It loads it offline.", "declined": False,
                   "page": "chapters/llm_basics", "link": "chapters/llm_basics.ipynb", "similarity": 0.6543,
                   "seconds": 1.23, "reason": ""}
    assert A.main(["How is the model loaded?"]) == 0
    assert capsys.readouterr().out.strip() == fake_ask("How is the model loaded?").render()


def test_main_reports_errors_with_exit_code_2(monkeypatch, capsys):
    assert A.main([" "]) == 2  # the real ask() refuses an empty question before loading anything
    captured = capsys.readouterr()
    assert captured.err.startswith("error: the question is empty") and captured.out == ""

    def broken(question, device="cpu"):
        raise RuntimeError("the model file is damaged")

    monkeypatch.setattr(A, "ask", broken)
    assert A.main(["Anything?"]) == 2 and "error: the model file is damaged" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        A.main([])  # argparse: the question is required
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        A.main(["--device", "tpu", "Anything?"])


def test_the_command_line_answers_the_readme_question():
    """The README's command, as a learner types it: the whole book indexed, SmolLM2 answering, offline."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "bigmodel_utils.assistant", "--json", "What does the KV cache store?"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    reply = json.loads(out.stdout.strip().splitlines()[-1])
    assert not reply["declined"] and reply["page"] in {"glossary", "chapters/llm_basics"} and reply["answer"]
    empty = subprocess.run([sys.executable, "-m", "bigmodel_utils.assistant", " "], capture_output=True, text=True,
                           timeout=600)
    assert empty.returncode == 2 and "empty" in empty.stderr
