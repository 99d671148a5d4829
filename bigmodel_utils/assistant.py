"""The technical-support assistant (技术支持 / 智能客服): retrieval over the book's pages, then SmolLM2
writes an answer that cites the page it used, or declines.

Why this module exists: the article promises large models for technical support and service; this is
the smallest honest version of one, built from the book's own parts. The book's pages (chapter prose,
FAQ, glossary, errata, ...) are cut into passages of about a paragraph and embedded once with the
sentence encoder of the language chapter (:mod:`bigmodel_utils.semantic_search`); a question is
embedded the same way; when the best passage is too far from it the assistant declines without
asking the LLM; otherwise the best passages go into SmolLM2's prompt (:mod:`bigmodel_utils.llm`)
with the instruction to answer from them only. The answer cites the page of the passage it draws on.

For learners: ``ask("How does the book load the language model offline?")`` in JupyterLab, or
``python -m bigmodel_utils.assistant "..."`` in a terminal.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .semantic_search import BOOK, Passage, parse_faq, parse_glossary, plain_text, slugify

#: The book's pages the assistant reads: every chapter notebook, plus these Markdown pages (the
#: execution report, credits and bibliography are left out: they describe runs and people, not ideas).
MARKDOWN_PAGES = ("intro", "algorithms", "applications", "trends", "faq", "glossary", "errata")
#: The two chapters that evaluate LLMs are not read: their prose discusses the evaluation sets, so
#: indexing them would let the assistant find its test questions described.
EXCLUDED_PAGES = ("chapters/llm_prompting", "chapters/llm_assistant")
#: Passages are cut to at most this many words: MiniLM reads at most 256 word pieces.
MAX_WORDS = 120
#: Similarity below which the assistant declines; chosen on the language chapter's questions (the
#: development set), never on the assistant's held-out set (see the assistant chapter, §4).
DEFAULT_MIN_SCORE = 0.32
DEFAULT_K = 2
DEFAULT_MAX_NEW_TOKENS = 48
SYSTEM = ("You are the support assistant of an executable book about large models. Answer the reader's question "
          "using only the context passages from the book. If the context does not contain the answer, say: "
          "\"I don't know.\"")


# --------------------------------------------------------------------------- the book's pages as passages

def _page_sources(book: Path) -> list[tuple[str, str, str]]:
    """``(page id, link, markdown)`` of every page the assistant reads; chapters in file order."""
    pages = []
    for nb in sorted((book / "chapters").glob("*.ipynb")):
        if f"chapters/{nb.stem}" in EXCLUDED_PAGES:
            continue
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        md = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        pages.append((f"chapters/{nb.stem}", f"chapters/{nb.name}", md))
    for stem in MARKDOWN_PAGES:
        path = book / f"{stem}.md"
        if path.is_file():
            pages.append((stem, f"{stem}.md", path.read_text(encoding="utf-8")))
    if not pages:
        raise FileNotFoundError(f"no book pages under {book}; pass the book/ folder of the repository")
    return pages


CODE_DIRECTIVES = frozenset({"code", "code-block", "code-cell", "graphviz", "mermaid", "math", "literalinclude"})


def _blocks(markdown: str):
    """``(heading, block)`` pairs: paragraphs, list items and table rows, outside code fences."""
    heading, block, fences = "", [], []  # open fences: "text" (MyST directives keep their text) or "code"
    for line in markdown.splitlines() + [""]:
        s = line.strip()
        if re.match(r"^(`{3,}|~{3,})", s):
            if block:
                yield heading, " ".join(block)
            block = []
            directive = re.match(r"^(?:`{3,}|~{3,})\{([a-z-]+)\}", s)
            if directive:
                fences.append("code" if directive.group(1) in CODE_DIRECTIVES else "text")
            elif not s.strip("`~") and fences:
                fences.pop()
            else:
                fences.append("code")
            continue
        if "code" in fences:
            continue
        m = re.match(r"^#{1,6}\s+(.*)", s)
        if m or not s or re.match(r"^\([a-z0-9-]+\)=$", s) or s.startswith(":"):
            if block:
                yield heading, " ".join(block)
            block = []
            if m:
                heading = m.group(1).strip()
            continue
        if s.startswith("|"):
            if block:
                yield heading, " ".join(block)
            block = []
            cells = [c.strip() for c in s.strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                yield heading, " — ".join(c for c in cells if c)
            continue
        if re.match(r"^([-*+]|\d+\.)\s", s) and block:
            yield heading, " ".join(block)
            block = []
        block.append(s)


def _split_words(text: str, max_words: int) -> list[str]:
    words = text.split()
    if len(words) <= max_words:
        return [text]
    sentences, out, cur = re.split(r"(?<=[.!?;])\s+", text), [], []
    for sent in sentences:
        w = sent.split()
        if cur and len(cur) + len(w) > max_words:
            out.append(" ".join(cur))
            cur = []
        cur += w
        while len(cur) > max_words:
            out.append(" ".join(cur[:max_words]))
            cur = cur[max_words:]
    if cur:
        out.append(" ".join(cur))
    return out


def book_passages(book: str | Path | None = None, max_words: int = MAX_WORDS, min_words: int = 6) -> list[Passage]:
    """The book cut into passages of at most ``max_words`` words, each knowing its page and section.

    Consecutive short paragraphs of one section are merged; a long one is cut at sentence ends. The
    FAQ and the glossary keep the units of :mod:`semantic_search` (one answer paragraph, one term).
    A passage's ``source`` is its page id (``chapters/llm_basics``, ``faq``, ...), its ``title`` the
    page title and section heading.
    """
    book = Path(book) if book is not None else BOOK
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 10:
        raise ValueError(f"max_words must be an integer >= 10, got {max_words!r}")
    passages: list[Passage] = []
    for page, link, md in _page_sources(book):
        if page == "faq":
            for p in parse_faq(book / "faq.md"):
                for k, chunk in enumerate(c for c in p.chunks if len(c.split()) >= min_words):
                    for j, piece in enumerate(_split_words(chunk, max_words)):
                        if len(piece.split()) < min_words:
                            continue
                        passages.append(Passage(f"faq#{p.id}-{k}-{j}", "faq", f"FAQ: {p.title}", piece,
                                                f"faq.md#{p.id}"))
            continue
        if page == "glossary":
            for p in parse_glossary(book / "glossary.md"):
                pieces = _split_words(p.text, max_words)
                passages += [Passage(f"glossary#{p.id}" + (f"-{j}" if len(pieces) > 1 else ""), "glossary",
                                     f"Glossary: {p.title}", piece, "glossary.md") for j, piece in enumerate(pieces)]
            continue
        title_match = re.search(r"^#\s+(.+)$", md, flags=re.M)
        title = plain_text(title_match.group(1), keep_identifiers=True) if title_match else page
        merged: list[tuple[str, list[str]]] = []
        for heading, block in _blocks(md):
            text = plain_text(block, keep_identifiers=True)
            if len(text.split()) < 3:
                continue
            if merged and merged[-1][0] == heading and len(" ".join(merged[-1][1]).split()) + len(text.split()) \
                    <= max_words and len(" ".join(merged[-1][1]).split()) < min_words * 5:
                merged[-1][1].append(text)
            else:
                merged.append((heading, [text]))
        counts: dict[str, int] = {}
        for heading, texts in merged:
            for piece in _split_words(" ".join(texts), max_words):
                if len(piece.split()) < min_words:
                    continue
                section = plain_text(heading, keep_identifiers=True) if heading else ""
                section = "" if section == title else section
                slug = slugify(section) or "top"
                counts[slug] = counts.get(slug, 0) + 1
                passages.append(Passage(f"{page}#{slug}-{counts[slug]}", page,
                                        f"{title}: {section}" if section else title, piece, link))
    return passages


def page_ids(book: str | Path | None = None) -> list[str]:
    """Ids of the pages the assistant reads (``chapters/<stem>`` and the Markdown pages)."""
    return [page for page, _, _ in _page_sources(Path(book) if book is not None else BOOK)]


# --------------------------------------------------------------------------- the index

class BookIndex:
    """Passages embedded once with the sentence encoder; the embeddings are cached (checksummed) under
    the model cache, keyed by the passages' text and the encoder, so a kernel restart costs nothing."""

    def __init__(self, encoder, passages: list[Passage], *, use_cache: bool = True, batch_size: int = 32):
        if not passages:
            raise ValueError("no passages to index")
        self.encoder, self.passages, self.batch_size = encoder, list(passages), batch_size
        texts = [f"{p.title}. {p.text}" for p in self.passages]
        key = hashlib.sha256("\n".join(texts).encode("utf-8") + _encoder_key(encoder).encode()).hexdigest()[:16]
        self.cache_path = _cache_file(key)
        self.embeddings = None
        if use_cache:
            from .data import load_cached

            self.embeddings = load_cached(self.cache_path, lambda p: np.load(p, allow_pickle=False),
                                          what="cached passage embeddings", action="re-embedding the book")
            if self.embeddings is not None and self.embeddings.shape[0] != len(texts):
                self.embeddings = None
        if self.embeddings is None:
            self.embeddings = self.encode(texts)
            if use_cache:
                from .data import save_cached

                def write(path):
                    with open(path, "wb") as fh:
                        np.save(fh, self.embeddings, allow_pickle=False)

                save_cached(self.cache_path, write)

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.encoder.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                              convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

    def scores(self, questions: list[str]) -> np.ndarray:
        """(questions × passages) cosine similarities."""
        if isinstance(questions, str) or not len(questions) or not all(isinstance(q, str) and q.strip()
                                                                       for q in questions):
            raise ValueError("questions must be a non-empty list of non-empty strings")
        return self.encode(questions) @ self.embeddings.T

    def search(self, question: str, k: int = DEFAULT_K) -> list[tuple[Passage, float]]:
        """The ``k`` passages most similar to ``question``, best first, with their similarities."""
        _check_question(question)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        s = self.scores([question])[0]
        order = np.argsort(-s, kind="stable")[:k]
        return [(self.passages[i], float(s[i])) for i in order]


def _encoder_key(encoder) -> str:
    from .semantic_search import PACKAGE, PACKAGE_VERSION

    return f"{PACKAGE}=={PACKAGE_VERSION}:{getattr(encoder, 'max_seq_length', '')}"


def _cache_file(key: str) -> Path:
    from .models import cache_dir

    return Path(cache_dir()) / f"assistant-index-{key}.npy"


def _check_question(question) -> str:
    if not isinstance(question, str):
        raise ValueError(f"the question must be a string, got {type(question).__name__}")
    if not question.strip():
        raise ValueError("the question is empty; ask something, e.g. ask('What is a KV cache?')")
    return question.strip()


# --------------------------------------------------------------------------- answering

@dataclass
class AssistantAnswer:
    """One answer: the text, the page it cites (None when declined) and what it was built from."""

    question: str
    text: str
    page: str | None
    link: str | None
    declined: bool
    score: float  # similarity of the best passage
    passages: list = field(default_factory=list, repr=False)  # (Passage, similarity) given to the model
    seconds: float = 0.0
    reason: str = ""  # why it declined

    def render(self) -> str:
        if self.declined:
            return f"Q: {self.question}\nA: I don't know: {self.reason}."
        return f"Q: {self.question}\nA: {self.text}\n   (source: book/{self.link}; similarity {self.score:.2f})"

    def _repr_markdown_(self) -> str:  # JupyterLab shows the answer, not the dataclass
        if self.declined:
            return f"**Q:** {self.question}\n\n**A:** *I don't know* — {self.reason}."
        return f"**Q:** {self.question}\n\n**A:** {self.text}\n\n*Source:* `book/{self.link}` (similarity {self.score:.2f})"


def context_prompt(question: str, passages: list[tuple[Passage, float]]) -> str:
    """The user turn: numbered context passages with their pages, then the question."""
    question = _check_question(question)
    context = "\n\n".join(f"[{i}] ({p.title})\n{p.text}" for i, (p, _) in enumerate(passages, 1))
    return f"Context:\n{context}\n\nQuestion: {question}\nAnswer in one or two sentences."


def attribute(answer: str, passages: list[tuple[Passage, float]]) -> int:
    """Index of the passage the answer draws on: the one sharing the most content words with it
    (ties: the better retrieved). A small model does not cite reliably by itself, so the citation is
    computed, and the chapter measures how often it names a page that holds the answer."""
    if not passages:
        raise ValueError("no passages to attribute to")
    words = set(_content_words(answer))
    overlaps = [len(words & set(_content_words(p.text + " " + p.title))) for p, _ in passages]
    return int(np.argmax(overlaps))


_STOP = frozenset("""a an the of to in on for and or is are was were be been it its this that these those with as by
from at which what how why when who does do can not no yes into than then there their they them you your i we our""".split())


def _content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 2]


class SupportAssistant:
    """Retrieval over :class:`BookIndex`, then SmolLM2 answers from the ``k`` best passages or declines."""

    def __init__(self, index: BookIndex, tokenizer, model, *, k: int = DEFAULT_K,
                 min_score: float = DEFAULT_MIN_SCORE, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if not isinstance(min_score, (int, float)) or not -1 <= min_score <= 1:
            raise ValueError(f"min_score must be a cosine similarity in [-1, 1], got {min_score!r}")
        self.index, self.tokenizer, self.model = index, tokenizer, model
        self.k, self.min_score, self.max_new_tokens = k, float(min_score), max_new_tokens

    def prompt_ids(self, question: str, passages):
        """Chat-formatted prompt ids and the passages kept: the worst passages are dropped until the prompt and
        the answer fit the context window; the answer lists the passages it was given."""
        from . import llm

        limit = llm.context_length(self.model) - self.max_new_tokens
        passages = list(passages)
        while True:
            ids = llm.chat_prompt(self.tokenizer, context_prompt(question, passages), system=SYSTEM)
            if ids.shape[1] <= limit or len(passages) <= 1:
                break
            passages.pop()
        if ids.shape[1] > limit:
            raise ValueError(f"the question and its context take {ids.shape[1]:,} tokens; the model reads at most "
                             f"{limit:,} before its answer (context window {llm.context_length(self.model):,} minus "
                             f"{self.max_new_tokens} answer tokens). Shorten the question.")
        return ids, passages

    def ask(self, question: str) -> AssistantAnswer:
        from . import llm

        question = _check_question(question)
        limit = llm.context_length(self.model) - self.max_new_tokens
        n_tokens = len(self.tokenizer(question, add_special_tokens=False)["input_ids"])
        if n_tokens > limit:
            raise ValueError(f"the question has {n_tokens:,} tokens; the model reads at most {limit:,} before its answer "
                             f"(context window {llm.context_length(self.model):,} minus {self.max_new_tokens} answer "
                             "tokens). Shorten the question.")
        start = time.perf_counter()
        found = self.index.search(question, self.k)
        best = found[0][1]
        if best < self.min_score:
            return AssistantAnswer(question, "", None, None, True, best, found, time.perf_counter() - start,
                                   reason=f"nothing in the book is close enough (best similarity {best:.2f} < "
                                          f"{self.min_score:.2f})")
        ids, used = self.prompt_ids(question, found)
        gen = llm.generate(self.model, self.tokenizer, ids, self.max_new_tokens)
        text = _tidy(gen.text)
        if llm_declined(text):
            return AssistantAnswer(question, text, None, None, True, best, used, time.perf_counter() - start,
                                   reason="the passages found do not answer it, says the model")
        p = used[attribute(text, used)][0]
        return AssistantAnswer(question, text, p.source, p.link, False, best, used, time.perf_counter() - start)


def llm_declined(text: str) -> bool:
    """Whether the model's answer is a refusal ("I don't know", "not in the context", ...)."""
    from .llm_eval import is_abstention

    return is_abstention(text)


def _tidy(text: str) -> str:
    """The answer without surrounding space; an answer cut off by the token limit ends with " …"."""
    text = text.strip()
    if text and not re.search(r"[.!?)\"']$", text):
        text += " …"
    return text


def retrieval_only(index: BookIndex, question: str, min_score: float = DEFAULT_MIN_SCORE) -> AssistantAnswer:
    """The baseline without a language model: the best passage itself is the answer (or a decline)."""
    question = _check_question(question)
    start = time.perf_counter()
    (p, s), = index.search(question, 1)
    if s < min_score:
        return AssistantAnswer(question, "", None, None, True, s, [(p, s)], time.perf_counter() - start,
                               reason=f"best similarity {s:.2f} < {min_score:.2f}")
    return AssistantAnswer(question, p.text, p.source, p.link, False, s, [(p, s)], time.perf_counter() - start)


def closed_book(tokenizer, model, question: str, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> AssistantAnswer:
    """The baseline without retrieval: SmolLM2 answers from what it learned in training, citing nothing."""
    from . import llm

    question = _check_question(question)
    start = time.perf_counter()
    gen = llm.generate(model, tokenizer, llm.chat_prompt(tokenizer, f"{question}\nAnswer in one or two sentences."),
                       max_new_tokens)
    text = _tidy(gen.text)
    return AssistantAnswer(question, text, None, None, llm_declined(text), float("nan"), [],
                           time.perf_counter() - start)


# --------------------------------------------------------------------------- scoring against the held-out set

def score_answer(item: dict, answer: AssistantAnswer) -> dict:
    """The stated rules, for one held-out item: an answerable question is answered correctly when every key
    fact is in the answer (a decline is wrong); the citation is correct when the cited page is one of the
    item's pages; an unanswerable question is handled correctly when it is declined."""
    from .llm_eval import key_facts_present

    answerable = bool(item.get("answerable", True))
    if answerable:
        correct = (not answer.declined) and key_facts_present(answer.text, item["key_facts"])
        cited = (not answer.declined) and answer.page in item["pages"]
    else:
        correct, cited = answer.declined, None
    return {"id": item["id"], "answerable": answerable, "declined": answer.declined, "correct": bool(correct),
            "citation_correct": cited, "seconds": answer.seconds, "words": len(answer.text.split())}


def summarise(records: list[dict]) -> dict:
    """Rates over scored items: correct answers (answerable), correct citations (answered answerable),
    correct declines (unanswerable), false declines (answerable), median seconds per question."""
    import pandas as pd

    df = pd.DataFrame(records)
    if df.empty:
        raise ValueError("no scored answers")
    ans, unans = df[df.answerable], df[~df.answerable]
    answered = ans[~ans.declined]
    return {
        "answer correct": float(ans.correct.mean()) if len(ans) else float("nan"),
        "citation correct": float(answered.citation_correct.astype(float).mean()) if len(answered) else float("nan"),
        "correct declines": float(unans.declined.mean()) if len(unans) else float("nan"),
        "false declines": float(ans.declined.mean()) if len(ans) else float("nan"),
        "median seconds": float(df.seconds.median()),
        "n answerable": int(len(ans)), "n unanswerable": int(len(unans)),
    }


def choose_threshold(in_scope, out_of_scope) -> float:
    """The decline threshold that best separates the best-passage similarities of questions the book
    answers (``in_scope``) from those it does not: the cut with the highest balanced accuracy (the mean
    of the two correct rates), placed midway between the two scores it falls between (ties: the lowest)."""
    a, b = np.asarray(in_scope, dtype=float), np.asarray(out_of_scope, dtype=float)
    if a.ndim != 1 or b.ndim != 1 or not a.size or not b.size:
        raise ValueError("need non-empty 1-D arrays of similarities for both kinds of question")
    values = np.unique(np.concatenate([a, b]))
    cuts = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    balanced = [((a >= c).mean() + (b < c).mean()) / 2 for c in cuts]
    return float(cuts[int(np.argmax(balanced))])


def gold_page_retrieved(index: BookIndex, item: dict, k: int = DEFAULT_K) -> bool:
    """Whether one of the ``k`` passages retrieved for a held-out item comes from a page that answers it:
    separates retrieval misses from generation misses."""
    return any(p.source in item["pages"] for p, _ in index.search(item["question"], k))


# --------------------------------------------------------------------------- for learners: ask() and a CLI

@functools.lru_cache(maxsize=2)
def default_assistant(device: str = "cpu") -> SupportAssistant:
    """The assistant over the whole book with the default settings, built once per process (the LLM load,
    the encoder and the index: about 30 s the first time on 2 cores, then cached on disk)."""
    from . import llm, semantic_search

    encoder = semantic_search.load_encoder(device)
    index = BookIndex(encoder, book_passages())
    tokenizer, model = llm.load_llm(device)
    return SupportAssistant(index, tokenizer, model)


def ask(question: str, device: str = "cpu") -> AssistantAnswer:
    """Ask the book a question; the answer cites the page it comes from, or says it does not know.

    >>> ask("What does the KV cache store?")   # doctest: +SKIP
    """
    _check_question(question)
    return default_assistant(device).ask(question)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.assistant",
                                     description="Ask the book's technical-support assistant a question (offline).")
    parser.add_argument("question", nargs="+", help="the question, in English")
    parser.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    args = parser.parse_args(argv)
    question = " ".join(args.question)
    try:
        from .devices import resolve_device

        answer = ask(question, resolve_device(args.device))
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"question": answer.question, "answer": answer.text, "declined": answer.declined,
                          "page": answer.page, "link": answer.link, "similarity": round(answer.score, 4),
                          "seconds": round(answer.seconds, 2), "reason": answer.reason}, ensure_ascii=False))
    else:
        print(answer.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
