"""Evaluating a language model honestly: frozen question sets, prompts, scoring rules, intervals, baselines.

Why this module exists: a prompt that "works" on three hand-picked questions says little. The LLM
chapters score the model on question sets written for the book before any prompt was tried,
shipped in ``bigmodel_utils/llm_data/`` (CC BY 4.0) and frozen by their SHA-256, with stated
scoring rules, a confidence interval on every accuracy and a non-LLM baseline beside it.

- **Routing** (``reader_questions.jsonl``, 120 questions, 20 per part): which part of the book
  answers a reader's question; the support desk's first step (ticket routing). Answered zero-shot,
  few-shot or constrained to the option letters.
- **Closed-book facts** (``closed_book_facts.jsonl``, 40 questions): 20 general facts of machine
  learning and 20 facts only this book states, to measure confident wrong answers (hallucination).
- **Support questions** (``support_questions.jsonl``, 60 answerable with reference pages and key
  facts, 15 the book cannot answer): the held-out set of the technical-support assistant
  (:mod:`bigmodel_utils.assistant`).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from .data import sha256_file

DATA_DIR = Path(__file__).resolve().parent / "llm_data"
LICENCE = "CC BY 4.0, written for this book (see bigmodel_utils/llm_data/README.md)"

#: SHA-256 of each question set as frozen before any prompt or assistant was evaluated on it.
FROZEN_SHA256 = {
    "reader_questions.jsonl": "8ea60505a251eddda08b2076790f16e7f318d6cb3d8cc9017e01d07729ffd473",
    "closed_book_facts.jsonl": "e7b14d53c233be15ba5821ef9c7afa7c05db85bd7e8ec8359159fcc484cc19e5",
    "support_questions.jsonl": "54764e7969f4e206ccee074e1e351f9a032c1a96302862c340286d870bdafefd",
}


class QuestionSetError(RuntimeError):
    """A question set is missing, edited after it was frozen, or malformed."""


def load_question_set(name: str, directory: str | Path | None = None, *, verify: bool = True) -> list[dict]:
    """The items of one frozen question set (a list of dicts), after checking its SHA-256.

    A set edited after the evaluation was run would silently change every reported accuracy, so a
    changed file is refused; ``verify=False`` (for writing a new set) skips the check.
    """
    if name not in FROZEN_SHA256:
        raise ValueError(f"unknown question set {name!r}; known: {', '.join(FROZEN_SHA256)}")
    path = Path(directory or DATA_DIR) / name
    if not path.is_file():
        raise QuestionSetError(f"{path} is missing; restore it with `git checkout -- bigmodel_utils/llm_data/{name}` "
                               "(or reinstall the package)")
    if verify and FROZEN_SHA256[name] is not None:
        got = sha256_file(path)
        if got != FROZEN_SHA256[name]:
            raise QuestionSetError(f"{path} changed after it was frozen (SHA-256 {got[:12]}…, expected "
                                   f"{FROZEN_SHA256[name][:12]}…); restore it with `git checkout -- "
                                   f"bigmodel_utils/llm_data/{name}`. A new set needs a new file name and its own "
                                   "hash in llm_eval.FROZEN_SHA256.")
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as err:
            raise QuestionSetError(f"{path}, line {n}: not JSON ({err})") from None
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(item.get("question"), str):
            raise QuestionSetError(f"{path}, line {n}: each line needs an 'id' and a 'question' string")
        items.append(item)
    ids = [i["id"] for i in items]
    if len(set(ids)) != len(ids):
        raise QuestionSetError(f"{path}: duplicate ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return items


# --------------------------------------------------------------------------- routing prompts

#: The six parts of the book a reader's question is routed to, with the description the prompt shows.
LABELS = {
    "vision": "images and convolutional networks (CNNs, the MNIST case study)",
    "sequences": "sequences and language (RNNs, LSTMs, Transformers, LLMs, text and speech)",
    "generative": "generative models (GANs, VAEs)",
    "maths": "the mathematics of training (gradients, losses, optimisers, the model lifecycle)",
    "efficiency": "efficiency and scale (scaling laws, compression, distributed training, speed)",
    "responsible": "responsible AI (interpretability, privacy, fairness)",
}
LETTERS = "ABCDEF"

#: Several wordings of the same routing instruction: accuracy should not hinge on one phrasing.
ROUTING_WORDINGS = (
    "Which part of the book answers this reader's question?\n\nQuestion: {question}\n\nParts:\n{options}\n\n"
    "Reply with the letter of the part.",
    "A reader of a machine-learning book asks: \"{question}\"\nWhich of these chapters should they read?\n"
    "{options}\nAnswer with one letter.",
    "Classify the question into one topic.\n{options}\nQuestion: {question}\nTopic letter:",
)


def routing_options() -> str:
    return "\n".join(f"{letter}. {name}: {desc}" for letter, (name, desc) in zip(LETTERS, LABELS.items()))


def routing_prompt(question: str, wording: int = 0) -> str:
    """The user turn asking the model to route ``question`` to one of :data:`LABELS` by letter."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    if isinstance(wording, bool) or not isinstance(wording, int) or not 0 <= wording < len(ROUTING_WORDINGS):
        raise ValueError(f"wording must be an integer in [0, {len(ROUTING_WORDINGS)}), got {wording!r}")
    return ROUTING_WORDINGS[wording].format(question=question.strip(), options=routing_options())


def label_answer(label: str) -> str:
    """How a correct routing answer is written in a few-shot example: ``"B. sequences"``."""
    return f"{LETTERS[list(LABELS).index(label)]}. {label}"


def few_shot_items(items: list[dict], per_label: int = 1, seed: int = 0) -> list[dict]:
    """``per_label`` items of each label, drawn with ``seed``, to be shown as examples (and then left out
    of every condition's score, so that all conditions are scored on the same questions)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in LABELS:
        pool = [i for i in items if i["label"] == label]
        if len(pool) < per_label:
            raise ValueError(f"only {len(pool)} items with label {label!r}, need {per_label}")
        chosen += [pool[k] for k in sorted(rng.choice(len(pool), per_label, replace=False))]
    return chosen


def parse_label(text: str) -> str | None:
    """The label a free-form answer names: a leading option letter (``"B"``, ``"B."``, ``"(B)"``) or the
    first label name in the text; None when it names none (scored as wrong)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    t = text.strip()
    m = re.match(r"^\(?([A-F])(?:[).:]|\s*$)", t)
    if m:
        return list(LABELS)[LETTERS.index(m.group(1))]
    m = re.search(r"\b(?:answer|part|topic|letter)(?: is)?[:\s]+\(?([A-F])\b", t, flags=re.I)
    if m:
        return list(LABELS)[LETTERS.index(m.group(1).upper())]
    hits = [(m.start(), label) for label in LABELS for m in [re.search(rf"\b{label}\b", t, flags=re.I)] if m]
    return min(hits)[1] if hits else None


def letter_token_ids(tokenizer, n: int = len(LETTERS)) -> list[int]:
    """Token ids of the option letters as the first token of an answer; each must be one token."""
    ids = []
    for letter in LETTERS[:n]:
        toks = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise ValueError(f"option letter {letter!r} is {len(toks)} tokens for this tokenizer; need 1")
        ids.append(toks[0])
    return ids


def constrained_choice(logits, letter_ids: list[int]) -> tuple[int, np.ndarray, float]:
    """Constrained answer: the option whose letter the model scores highest, whatever it would have written.

    Returns the chosen option index, the probabilities of the letters renormalised among themselves,
    and the share of the model's next-token probability that fell on any letter at all.
    """
    import torch

    logp = torch.log_softmax(torch.as_tensor(logits).detach().double().reshape(-1), -1)
    if not letter_ids or max(letter_ids) >= logp.numel() or min(letter_ids) < 0:
        raise ValueError(f"letter ids must lie in [0, {logp.numel()})")
    sub = logp[list(letter_ids)]
    probs = torch.softmax(sub, -1).numpy()
    return int(np.argmax(probs)), probs, float(torch.exp(sub).sum())


#: How the option-text scoring states each part, after the question (shorter than the prompt's list).
OPTION_TEXTS = {
    "vision": "images and convolutional networks",
    "sequences": "sequences, text and language models",
    "generative": "generative models such as GANs and VAEs",
    "maths": "the mathematics of training: gradients, losses and optimisers",
    "efficiency": "efficiency, scaling and speed",
    "responsible": "interpretability, privacy and fairness",
}
OPTION_TEMPLATE = "Question: {question}\nThis question is about {option}."


def option_text_scores(model, tokenizer, question: str, options: dict | None = None,
                       template: str = OPTION_TEMPLATE) -> np.ndarray:
    """Mean log-probability per token of each option's text as the continuation of the question, without
    any chat format: the model used as a language model, the way benchmark harnesses score multiple
    choice. The question is run once and its keys and values are shared by the options, whose few
    tokens then go through the model in one batch. ``{option}`` must end the template (up to punctuation)."""
    import torch

    options = OPTION_TEXTS if options is None else options
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    if "{question}" not in template or "{option}" not in template:
        raise ValueError("the template needs {question} and {option}")
    head = template.split("{option}")[0].format(question=question.strip()).rstrip()  # the space goes with the option
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    n_head = len(head_ids)
    seqs = [tokenizer(template.format(question=question.strip(), option=o), add_special_tokens=False)["input_ids"]
            for o in options.values()]
    if any(s[:n_head] != head_ids or len(s) <= n_head for s in seqs):
        raise ValueError("the options must change only the tokens after the question; put {option} at the end")
    with torch.inference_mode():
        head_out = model(input_ids=torch.tensor([head_ids], device=model.device), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(head_out.logits[0, -1].double().cpu(), -1)
        tails = [s[n_head:] for s in seqs]
        width = max(len(t) for t in tails) - 1
        rest = None
        if width > 0:  # all options' remaining tokens in one batch, each reading the question's cache
            cache = head_out.cache
            cache.batch_repeat_interleave(len(tails))
            ids = torch.tensor([t[:-1] + [0] * (width - len(t) + 1) for t in tails], device=model.device)
            mask = torch.tensor([[1] * n_head + [1] * (len(t) - 1) + [0] * (width - len(t) + 1) for t in tails],
                                device=model.device)
            rest = torch.log_softmax(model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True)
                                     .logits.double().cpu(), -1)
    out = []
    for k, t in enumerate(tails):
        logp = [float(first[t[0]])] + [float(rest[k, j, tok]) for j, tok in enumerate(t[1:])]
        out.append(float(np.mean(logp)))
    return np.array(out)


CONTENT_FREE = ("N/A", "[question]", "...")


def calibrated_choice(scores, prior_scores, log: bool = True) -> np.ndarray:
    """Contextual calibration (Zhao et al., 2021): divide each option's probability by the probability
    the same prompt gives it for a content-free question (for log scores: subtract), so that a model
    that prefers one option whatever it is asked stops winning by that preference alone. ``scores`` is
    ``(items, options)`` or one row; returns the chosen option index per item."""
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    prior = np.asarray(prior_scores, dtype=float).reshape(-1)
    if s.shape[1] != prior.size:
        raise ValueError(f"{s.shape[1]} options in the scores but {prior.size} in the prior")
    if not log and np.any(prior <= 0):
        raise ValueError("probabilities of the prior must be positive")
    return np.argmax(s - prior if log else s / prior, axis=1)


# --------------------------------------------------------------------------- statistics and baselines

def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n (95 % for z = 1.96); sound at small n and near 0 or 1,
    where the textbook ``p ± z·sqrt(p(1-p)/n)`` leaves [0, 1] or shrinks to nothing."""
    for name, v in (("k", k), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_summary(correct) -> dict:
    """Accuracy of a boolean vector with its 95 % Wilson interval: ``{'accuracy', 'low', 'high', 'n', 'k'}``."""
    c = np.asarray(correct)
    if c.ndim != 1 or c.size == 0 or not np.isin(c, [0, 1]).all():
        raise ValueError("correct must be a non-empty 1-D vector of booleans")
    k, n = int(c.sum()), int(c.size)
    low, high = wilson_interval(k, n)
    return {"accuracy": k / n, "low": low, "high": high, "n": n, "k": k}


def majority_baseline(labels: list[str], folds: int = 5, seed: int = 0) -> np.ndarray:
    """Cross-validated predictions of the majority-class rule: each fold is predicted with the most
    frequent label of the other folds (ties: the label that comes first in :data:`LABELS`, then by name)."""
    labels = list(labels)
    order = list(LABELS) + sorted(set(labels) - set(LABELS))
    out = np.empty(len(labels), dtype=object)
    for train, test in _folds(labels, folds, seed):
        counts = {lab: sum(labels[i] == lab for i in train) for lab in order}
        out[test] = max(order, key=lambda lab: counts[lab])
    return out


def tfidf_logreg_baseline(texts: list[str], labels: list[str], folds: int = 5, seed: int = 0) -> np.ndarray:
    """Cross-validated predictions of TF-IDF (words and word pairs) + logistic regression: every question
    is predicted by a model trained on the other folds, so the score compares with the LLM's on the
    same questions. It learns from about 100 labelled questions; the LLM sees at most six."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    out = np.empty(len(labels), dtype=object)
    for train, test in _folds(list(labels), folds, seed):
        clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                            LogisticRegression(C=10.0, max_iter=2_000))
        clf.fit([texts[i] for i in train], [labels[i] for i in train])
        out[test] = clf.predict([texts[i] for i in test])
    return out


def _folds(labels: list[str], folds: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2, got {folds!r}")
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(skf.split(np.zeros(len(labels)), labels))


# --------------------------------------------------------------------------- answers with key facts

_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                        "\u2212": "-", "\u00a0": " ", "\u2009": " ", "\u202f": " "})


def normalise_answer(text: str) -> str:
    """Lower case, typographic quotes and dashes made plain, spaces collapsed (for substring matching)."""
    t = text.lower().translate(_PLAIN)
    return re.sub(r"\s+", " ", t)


def key_facts_present(answer: str, key_facts) -> bool:
    """The book's scoring rule for a written answer: correct when, for every key fact, at least one of its
    accepted spellings occurs in the answer (case-insensitive). A fact is a list of alternatives."""
    if not isinstance(answer, str):
        raise ValueError(f"answer must be a string, got {type(answer).__name__}")
    if not key_facts or any(isinstance(f, str) or not f for f in key_facts):
        raise ValueError("key_facts must be a non-empty list of non-empty lists of accepted spellings")
    a = normalise_answer(answer)
    return all(any(normalise_answer(alt) in a for alt in fact) for fact in key_facts)


ABSTENTION = re.compile(
    r"\b(i (?:do not|don't|cannot|can't|am not able to|am unable to) (?:know|say|answer|find|tell|provide)|"
    r"i'm (?:not sure|unable|not able)|i am not sure|not (?:mentioned|stated|given|provided|found) in|"
    r"(?:no|not enough) information|cannot be (?:determined|answered)|could not find|unknown to me|"
    r"i have no (?:way|information|access))", re.I)


def is_abstention(answer: str) -> bool:
    """Whether an answer declines ("I don't know", "not mentioned in the context", ...) instead of answering."""
    if not isinstance(answer, str):
        raise ValueError(f"answer must be a string, got {type(answer).__name__}")
    return not answer.strip() or bool(ABSTENTION.search(normalise_answer(answer)))


def closed_book_outcome(answer: str, key_facts) -> str:
    """``"correct"``, ``"abstained"`` or ``"confidently wrong"`` (an answer that commits to something false:
    a hallucination when the question is about facts the model cannot know)."""
    if key_facts_present(answer, key_facts):
        return "correct"
    return "abstained" if is_abstention(answer) else "confidently wrong"
