"""Unit tests of bigmodel_utils.llm_eval: frozen question sets, routing prompts, answer parsing, constrained
choice, Wilson intervals, the non-LLM baselines and the key-fact scoring rules.

Almost everything here is plain Python; the tests of the option-letter tokens and of constrained choice on
real logits load SmolLM2 once for the module (a few seconds when its dequantised copy is cached).
"""
import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from bigmodel_utils import llm_eval as ev

# one worker loads the model once for the tests that need it under pytest-xdist (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("llm")

SETS = ("reader_questions.jsonl", "closed_book_facts.jsonl", "support_questions.jsonl")


@pytest.fixture(scope="module")
def smol():
    from bigmodel_utils import llm
    from bigmodel_utils.devices import set_threads

    set_threads()  # BIGMODEL_THREADS or 2, as in the chapters
    return llm.load_llm()


# --------------------------------------------------------------------------- frozen question sets

def test_the_three_shipped_sets_load_with_their_documented_counts():
    routing = ev.load_question_set("reader_questions.jsonl")
    assert len(routing) == 120
    assert Counter(i["label"] for i in routing) == {label: 20 for label in ev.LABELS}
    facts = ev.load_question_set("closed_book_facts.jsonl")
    assert len(facts) == 40 and Counter(i["kind"] for i in facts) == {"general": 20, "book": 20}
    support = ev.load_question_set("support_questions.jsonl")
    assert len(support) == 75 and sum(bool(i["answerable"]) for i in support) == 60
    for items in (routing, facts, support):
        ids = [i["id"] for i in items]
        assert len(set(ids)) == len(ids) and all(isinstance(i["question"], str) and i["question"] for i in items)


def test_the_shipped_answers_satisfy_their_own_key_facts_and_cite_real_pages():
    from bigmodel_utils import assistant

    for item in ev.load_question_set("closed_book_facts.jsonl"):
        assert ev.key_facts_present(item["answer"], item["key_facts"]), item["id"]
    pages = set(assistant.page_ids())
    for item in ev.load_question_set("support_questions.jsonl"):
        if item["answerable"]:
            assert ev.key_facts_present(item["reference"], item["key_facts"]), item["id"]
            assert item["pages"] and set(item["pages"]) <= pages, item["id"]
            assert not set(item["pages"]) & set(assistant.EXCLUDED_PAGES)
        else:
            assert item["pages"] == [] and item["key_facts"] == []


def test_an_unedited_copy_loads_and_an_edited_one_is_refused(tmp_path):
    name = "reader_questions.jsonl"
    shutil.copyfile(ev.DATA_DIR / name, tmp_path / name)
    assert ev.load_question_set(name, directory=tmp_path) == ev.load_question_set(name)
    with open(tmp_path / name, "a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "rq999", "question": "An extra question?", "label": "maths"}) + "\n")
    with pytest.raises(ev.QuestionSetError, match="git checkout") as err:
        ev.load_question_set(name, directory=str(tmp_path))  # a str works as well as a Path
    assert "changed after it was frozen" in str(err.value) and ev.FROZEN_SHA256[name][:12] in str(err.value)
    assert len(ev.load_question_set(name, directory=tmp_path, verify=False)) == 121  # for writing a new set


def test_an_unknown_set_name_is_refused():
    with pytest.raises(ValueError, match="unknown question set"):
        ev.load_question_set("my_questions.jsonl")


def test_a_missing_file_names_the_remedy(tmp_path):
    with pytest.raises(ev.QuestionSetError, match="missing") as err:
        ev.load_question_set("closed_book_facts.jsonl", directory=tmp_path)
    assert "git checkout -- bigmodel_utils/llm_data/closed_book_facts.jsonl" in str(err.value)


@pytest.mark.parametrize("lines, message", [
    (['{"id": "a", "question": "Q?"}', '{"id": "b", "question": '], "line 2: not JSON"),
    (['{"id": "a", "question": "Q?"}', '{"question": "no id?"}'], "line 2: each line needs an 'id'"),
    (['{"id": "a", "question": 3}'], "line 1: each line needs"),
    (['["a", "list"]'], "line 1: each line needs"),
    (['{"id": "a", "question": "Q?"}', '{"id": "a", "question": "Again?"}'], "duplicate ids"),
])
def test_malformed_lines_are_refused_with_their_line_number(tmp_path, lines, message):
    (tmp_path / "support_questions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ev.QuestionSetError, match=message):
        ev.load_question_set("support_questions.jsonl", directory=tmp_path, verify=False)


def test_blank_lines_are_skipped(tmp_path):
    (tmp_path / "support_questions.jsonl").write_text('\n{"id": "a", "question": "Q?"}\n\n  \n', encoding="utf-8")
    assert ev.load_question_set("support_questions.jsonl", directory=tmp_path, verify=False) == [
        {"id": "a", "question": "Q?"}]


# --------------------------------------------------------------------------- routing prompts

def test_routing_options_list_six_lettered_parts():
    lines = ev.routing_options().splitlines()
    assert len(lines) == 6 == len(ev.LABELS) == len(ev.LETTERS)
    assert lines[1] == f"B. sequences: {ev.LABELS['sequences']}" and lines[5].startswith("F. responsible: ")


@pytest.mark.parametrize("wording", range(len(ev.ROUTING_WORDINGS)))
def test_every_wording_holds_the_question_and_every_option(wording):
    text = ev.routing_prompt("  What is a {kernel}?  ", wording)
    assert "What is a {kernel}?" in text and "  What is a" not in text  # stripped, braces kept as text
    assert ev.routing_options() in text
    assert "{question}" not in text and "{options}" not in text


def test_the_wordings_differ():
    assert len({ev.routing_prompt("Q?", w) for w in range(len(ev.ROUTING_WORDINGS))}) == len(ev.ROUTING_WORDINGS)


@pytest.mark.parametrize("bad", [3, -1, 1.0, True, "0", None])
def test_routing_prompt_refuses_a_bad_wording(bad):
    with pytest.raises(ValueError, match="wording"):
        ev.routing_prompt("What is a kernel?", bad)


@pytest.mark.parametrize("bad", ["", "   \n", None, 7])
def test_routing_prompt_refuses_an_empty_question(bad):
    with pytest.raises(ValueError, match="question"):
        ev.routing_prompt(bad)


def test_label_answer():
    assert ev.label_answer("vision") == "A. vision" and ev.label_answer("responsible") == "F. responsible"
    assert ev.parse_label(ev.label_answer("generative")) == "generative"


def test_few_shot_items_one_per_label_deterministic_with_the_seed():
    items = ev.load_question_set("reader_questions.jsonl")
    shots = ev.few_shot_items(items)
    assert [s["label"] for s in shots] == list(ev.LABELS) and all(s in items for s in shots)
    assert ev.few_shot_items(items, seed=0) == shots
    other = [ev.few_shot_items(items, seed=s) for s in range(1, 6)]
    assert any(o != shots for o in other)  # another seed draws other examples
    three = ev.few_shot_items(items, per_label=3, seed=1)
    assert len(three) == 18 and len({s["id"] for s in three}) == 18
    assert Counter(s["label"] for s in three) == {label: 3 for label in ev.LABELS}


def test_few_shot_items_needs_enough_of_every_label():
    items = [{"id": f"x{i}", "question": "Q?", "label": label} for i, label in enumerate(ev.LABELS)]
    assert len(ev.few_shot_items(items)) == 6
    with pytest.raises(ValueError, match="only 1 items with label 'vision', need 2"):
        ev.few_shot_items(items, per_label=2)
    with pytest.raises(ValueError, match="'responsible'"):
        ev.few_shot_items(items[:-1])


# --------------------------------------------------------------------------- parsing answers

@pytest.mark.parametrize("text, label", [
    ("B", "sequences"), ("B.", "sequences"), (" (C)", "generative"), ("C)", "generative"), ("D: maths", "maths"),
    ("The answer is D", "maths"), ("the answer: e", "efficiency"), ("Answer: (F)", "responsible"),
    ("Part A.", "vision"), ("sequences", "sequences"), ("I would say Responsible AI.", "responsible"),
    ("It is about maths, not vision.", "maths"),  # the first label named
    ("I am not sure.", None), ("", None), ("G.", None),
])
def test_parse_label(text, label):
    assert ev.parse_label(text) == label


@pytest.mark.parametrize("bad", [None, 2, ["B"]])
def test_parse_label_refuses_non_strings(bad):
    with pytest.raises(ValueError, match="string"):
        ev.parse_label(bad)


# --------------------------------------------------------------------------- constrained choice

def test_letter_token_ids_are_six_distinct_single_tokens(smol):
    tokenizer, _ = smol
    ids = ev.letter_token_ids(tokenizer)
    assert len(ids) == 6 == len(set(ids))
    assert [tokenizer.decode([i]) for i in ids] == list(ev.LETTERS)
    assert ev.letter_token_ids(tokenizer, 3) == ids[:3]


def test_letter_token_ids_refuses_a_letter_of_several_tokens():
    def two_token_tokenizer(text, add_special_tokens=False):
        return {"input_ids": [1, 2] if text == "C" else [ord(text)]}

    with pytest.raises(ValueError, match="'C' is 2 tokens"):
        ev.letter_token_ids(two_token_tokenizer)
    assert ev.letter_token_ids(two_token_tokenizer, 2) == [65, 66]


def test_constrained_choice_picks_the_best_letter():
    logits = torch.full((10,), -5.0)
    logits[[2, 3, 5, 7]] = torch.tensor([1.0, 3.0, 2.0, 0.0])
    logits[9] = 10.0  # the model's favourite token is not a letter: constrained choice ignores it
    choice, probs, mass = ev.constrained_choice(logits, [2, 3, 5, 7])
    assert choice == 1 and probs.shape == (4,) and abs(probs.sum() - 1) < 1e-12
    np.testing.assert_allclose(probs, np.exp([1, 3, 2, 0]) / np.exp([1, 3, 2, 0]).sum(), rtol=1e-9)
    full = torch.softmax(logits.double(), -1)
    assert 0 < mass < 0.01 and mass == pytest.approx(float(full[[2, 3, 5, 7]].sum()), rel=1e-9)
    # a (1, V) numpy array works too, and all the mass on the letters gives 1
    choice, probs, mass = ev.constrained_choice(np.array([[0.0, 0.0, 50.0, 60.0]]), [2, 3])
    assert choice == 1 and mass == pytest.approx(1.0) and 0 < mass <= 1


@pytest.mark.parametrize("ids", [[], [0, 10], [-1, 2]])
def test_constrained_choice_refuses_ids_outside_the_vocabulary(ids):
    with pytest.raises(ValueError, match="letter ids"):
        ev.constrained_choice(torch.zeros(10), ids)


def test_constrained_choice_on_the_real_model(smol):
    from bigmodel_utils import llm

    tokenizer, model = smol
    prompt = llm.chat_prompt(tokenizer, ev.routing_prompt("How does a convolutional network classify MNIST digits?"))
    logits = llm.last_logits(model, tokenizer, prompt)
    choice, probs, mass = ev.constrained_choice(logits, ev.letter_token_ids(tokenizer))
    assert 0 <= choice < 6 and probs.shape == (6,) and abs(probs.sum() - 1) < 1e-9
    assert 0 < mass <= 1 and probs[choice] == probs.max()


# --------------------------------------------------------------------------- intervals

def test_wilson_interval_known_values():
    low, high = ev.wilson_interval(0, 10)
    assert low == 0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = ev.wilson_interval(10, 10)
    assert high == 1 and low == pytest.approx(0.7225, abs=1e-4)
    low, high = ev.wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = ev.wilson_interval(81, 100)
    assert (low, high) == pytest.approx((0.7222, 0.8749), abs=1e-4)
    assert ev.wilson_interval(np.int64(3), np.int64(10)) == pytest.approx(ev.wilson_interval(3, 10))


def test_wilson_interval_is_symmetric_contains_p_and_narrows_with_n():
    for k, n in ((1, 7), (3, 10), (40, 120)):
        low, high = ev.wilson_interval(k, n)
        mirror_low, mirror_high = ev.wilson_interval(n - k, n)
        assert (low, high) == pytest.approx((1 - mirror_high, 1 - mirror_low), abs=1e-12)
        assert 0 <= low < k / n < high <= 1
    assert np.diff(ev.wilson_interval(30, 100)) < np.diff(ev.wilson_interval(3, 10))
    assert np.diff(ev.wilson_interval(3, 10, z=2.58)) > np.diff(ev.wilson_interval(3, 10))  # 99 % is wider


@pytest.mark.parametrize("k, n, message", [
    (11, 10, "k <= n"), (-1, 10, "k <= n"), (0, 0, "n > 0"), (1.0, 10, "integer"), (1, 10.0, "integer"),
    (True, 10, "integer"), ("1", 10, "integer"),
])
def test_wilson_interval_errors(k, n, message):
    with pytest.raises(ValueError, match=message):
        ev.wilson_interval(k, n)


def test_accuracy_summary():
    s = ev.accuracy_summary([True, False, True, True])
    assert (s["k"], s["n"], s["accuracy"]) == (3, 4, 0.75)
    assert (s["low"], s["high"]) == pytest.approx(ev.wilson_interval(3, 4))
    assert ev.accuracy_summary(np.array([1, 0, 0, 0]))["accuracy"] == 0.25
    for bad in ([], [[True, False]], [0.5, 1], ["yes"]):
        with pytest.raises(ValueError, match="booleans"):
            ev.accuracy_summary(bad)


# --------------------------------------------------------------------------- baselines

def toy_set():
    """A trivially separable toy routing set: 12 vision questions, 8 maths ones, disjoint vocabularies."""
    labels = ["maths"] * 12 + ["vision"] * 8
    rng = np.random.default_rng(0)
    rng.shuffle(labels)
    words = {"maths": "gradient loss derivative optimiser", "vision": "convolution image pixel picture"}
    texts = [f"question {i} about {words[label]}" for i, label in enumerate(labels)]
    return texts, labels


def test_majority_baseline_predicts_the_majority_label_of_the_training_folds():
    _, labels = toy_set()
    pred = ev.majority_baseline(labels, folds=4)
    assert pred.shape == (20,) and set(pred) == {"maths"}  # maths is the majority (not the first label)
    assert np.mean(pred == np.array(labels)) == pytest.approx(0.6)
    tie = ["sequences", "generative"] * 4
    assert set(ev.majority_baseline(tie, folds=2)) == {"sequences"}  # ties: the earlier label of LABELS
    assert ev.majority_baseline(labels, folds=4, seed=3).tolist() == pred.tolist()


def test_tfidf_logreg_baseline_is_near_perfect_on_a_separable_set_and_cross_validated():
    texts, labels = toy_set()
    pred = ev.tfidf_logreg_baseline(texts, labels, folds=4)
    assert pred.shape == (20,) and set(pred) <= set(labels)
    assert np.mean(pred == np.array(labels)) >= 0.95
    assert ev.tfidf_logreg_baseline(texts, labels, folds=4).tolist() == pred.tolist()  # seeded folds
    # cross-validated: a question is never predicted by a model that saw it. A maths-worded question
    # labelled vision, with a word of its own, is recalled by a model trained on it; held out, it cannot be.
    odd = "question about gradient loss derivative optimiser zebra"
    assert ev.tfidf_logreg_baseline(texts + [odd], labels + ["vision"], folds=4)[-1] == "maths"


def test_baselines_refuse_bad_arguments():
    texts, labels = toy_set()
    with pytest.raises(ValueError, match="20 texts but 19 labels"):
        ev.tfidf_logreg_baseline(texts, labels[:-1])
    for folds in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="folds"):
            ev.majority_baseline(labels, folds=folds)
        with pytest.raises(ValueError, match="folds"):
            ev.tfidf_logreg_baseline(texts, labels, folds=folds)


# --------------------------------------------------------------------------- key facts and abstentions

def test_key_facts_present_needs_every_fact_and_any_alternative():
    facts = [["hochreiter"], ["1997", "nineteen ninety-seven"]]
    assert ev.key_facts_present("Hochreiter and Schmidhuber, 1997.", facts)
    assert ev.key_facts_present("HOCHREITER, in nineteen ninety-seven", facts)  # another spelling, any case
    assert not ev.key_facts_present("Hochreiter and Schmidhuber.", facts)  # one fact missing
    assert not ev.key_facts_present("In 1997.", facts)
    assert ev.key_facts_present("It uses  the\nKV   cache", [["kv cache"]])  # spaces collapsed


def test_key_facts_present_makes_typographic_quotes_and_dashes_plain():
    assert ev.key_facts_present("The model\u2019s answer", [["model's"]])
    assert ev.key_facts_present("the top\u2013k filter and the em\u2014dash", [["top-k"], ["em-dash"]])
    assert ev.key_facts_present("60\u00a0000 images", [["60 000"]])
    assert ev.key_facts_present("top-k", [["top\u2014k"]])  # the accepted spelling is normalised too


@pytest.mark.parametrize("facts", [[], None, "1997", ["1997"], [["1997"], []]])
def test_key_facts_present_refuses_malformed_facts(facts):
    with pytest.raises(ValueError, match="key_facts"):
        ev.key_facts_present("1997", facts)


def test_key_facts_present_refuses_a_non_string_answer():
    with pytest.raises(ValueError, match="answer must be a string"):
        ev.key_facts_present(None, [["x"]])


@pytest.mark.parametrize("text", [
    "I don't know.", "I don\u2019t know.", "I do not know the answer.", "I cannot answer that.",
    "I'm not sure.", "This is not mentioned in the context.", "There is no information about it.",
    "It cannot be determined from the passages.", "I could not find it.", "", "   ",
])
def test_abstentions(text):
    assert ev.is_abstention(text)


@pytest.mark.parametrize("text", ["Paris.", "The KV cache stores keys and values.", "I know: 1997."])
def test_answers_are_not_abstentions(text):
    assert not ev.is_abstention(text)


def test_is_abstention_refuses_non_strings():
    with pytest.raises(ValueError, match="string"):
        ev.is_abstention(None)


def test_closed_book_outcome_three_outcomes():
    facts = [["1997"]]
    assert ev.closed_book_outcome("It was 1997.", facts) == "correct"
    assert ev.closed_book_outcome("I don't know.", facts) == "abstained"
    assert ev.closed_book_outcome("It was introduced in 2005.", facts) == "confidently wrong"
    assert ev.closed_book_outcome("I'm not sure, maybe 1997.", facts) == "correct"  # the facts decide first
    with pytest.raises(ValueError, match="key_facts"):
        ev.closed_book_outcome("1997", [])


def test_normalise_answer():
    assert ev.normalise_answer("  The\u00a0Model\u2019s  TOP\u2013K\n") == " the model's top-k "
    assert ev.normalise_answer("a\u2014b") == "a-b"


def test_majority_baseline_counts_labels_outside_the_book_parts():
    assert list(ev.majority_baseline(["x", "x", "x", "y", "x", "y"], folds=2)) == ["x"] * 6


def test_parse_label_does_not_read_the_article_a_as_option_a():
    assert ev.parse_label("A question about generative models.") == "generative"
    assert ev.parse_label("A") == "vision" and ev.parse_label("A: vision") == "vision"


def test_key_facts_ignore_typographic_quotes_and_minus_signs():
    assert ev.key_facts_present("the \u2018make test\u2019 target", [["'make test'"]])
    assert ev.key_facts_present("\u201cdelta\u201d is 10\u2212 5", [['"delta"'], ["10- 5"]])
