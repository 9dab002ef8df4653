"""The ``embedded`` backend for real: llama.cpp in-process on SmolLM2-135M-Instruct (the small model of
``rag.llm.models``: these tests need *a* model, not the default one, and it is ten times faster)."""

from __future__ import annotations

import math

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag.llm import LLM, EmbeddedLLM, LLMRequestError, LLMUnavailable, Usage, get_llm
from rag.llm import embedded as embedded_module
from rag.settings import Settings
from tests.conftest import SMALL_MODEL

ROOT = Path(__file__).resolve().parent.parent
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def llm() -> EmbeddedLLM:
    return EmbeddedLLM(model_name=SMALL_MODEL)


def test_get_llm_defaults_to_the_embedded_qwen_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAG_EMBEDDED_MODEL", raising=False)  # conftest picks the small model for the other tests
    llm = get_llm(Settings())
    assert isinstance(llm, EmbeddedLLM) and isinstance(llm, LLM)
    assert llm.backend == "embedded"
    assert llm.model == "qwen2.5-coder-1.5b-instruct-q4_k_m"
    assert llm.context_window == 4096
    small = get_llm(Settings(embedded_model="smollm2-135m"))
    assert small.model == "SmolLM2-135M-Instruct.Q4_1" and small.context_window == 2048
    with pytest.raises(LLMUnavailable, match="unknown embedded model 'gpt-5'.*qwen2.5-coder-1.5b, smollm2-135m"):
        get_llm(Settings(embedded_model="gpt-5"))


def test_health_checks_without_loading() -> None:
    fresh = EmbeddedLLM(model_name=SMALL_MODEL, n_ctx=1024)  # a configuration nobody loaded: health must not load it
    ok, detail = fresh.health()
    assert ok, detail
    assert "loads on first question" in detail and "1024" in detail
    assert not fresh.loaded


def test_streams_text_deltas_then_reports_this_requests_usage(llm: EmbeddedLLM) -> None:
    generation = llm.stream(QUESTION, max_tokens=24, temperature=0.0)
    deltas = list(generation)
    assert len(deltas) > 1, "a stream should arrive in several deltas"
    text = "".join(deltas)
    assert text.strip()
    # The ChatML template was applied and its end-of-turn token stopped or was stripped from the answer.
    assert "<|im_start|>" not in text and "<|im_end|>" not in text
    usage = generation.usage
    assert isinstance(usage, Usage)
    # Exact prompt count: the template wraps both messages in role markers, so more than their word count.
    rendered = (
        "<|im_start|>system\nYou are a helpful assistant. Answer briefly.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    llama = llm._model().llama
    assert usage.prompt_tokens == len(llama.tokenize(rendered.encode(), add_bos=False, special=True))
    assert 1 <= usage.completion_tokens <= 24


def test_one_model_instance_per_process(llm: EmbeddedLLM) -> None:
    other = get_llm(Settings(embedded_model=SMALL_MODEL, temperature=0.7))
    other.count_tokens("load it")
    assert llm.loaded and other.loaded  # type: ignore[attr-defined]
    assert llm._model() is other._model()  # type: ignore[attr-defined]
    assert [key[0] for key in embedded_module._loaded].count(str(llm.model_path)) == 1, "loaded once, shared"


def test_count_tokens_uses_the_model_tokenizer(llm: EmbeddedLLM) -> None:
    assert llm.count_tokens("") == 0
    assert llm.count_tokens("Paris") == 1
    long = "Retrieval-augmented generation grounds answers in passages. " * 20
    assert 100 < llm.count_tokens(long) < len(long) // 3


def test_prompt_over_the_context_window_is_a_clear_error(llm: EmbeddedLLM) -> None:
    huge = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(LLMRequestError, match=r"the prompt is \d+ tokens, more than the model's context window of 2048"):
        llm.complete(huge)


def test_a_slow_reader_does_not_hold_up_another_session(llm: EmbeddedLLM) -> None:
    """Two browser sessions share one model. Session A reads one delta and then stalls (a slow network, a tab in
    the background); session B, started after, must still get its whole answer, and A its own afterwards."""
    prompt_a = [{"role": "user", "content": "Write three sentences about the sea."}]
    prompt_b = [{"role": "user", "content": "Write three sentences about mountains."}]
    expected_a = llm.complete(prompt_a, max_tokens=48, temperature=0.0)
    expected_b = llm.complete(prompt_b, max_tokens=48, temperature=0.0)

    stalled = llm.stream(prompt_a, max_tokens=48, temperature=0.0)
    first = next(stalled)  # A is being answered now, and its reader goes away
    finished: list[str] = []
    other = threading.Thread(target=lambda: finished.append(llm.complete(prompt_b, max_tokens=48, temperature=0.0)))
    other.start()
    other.join(timeout=120)
    assert not other.is_alive(), "session B waited on session A's stalled reader"
    assert finished == [expected_b]
    assert first + stalled.text() == expected_a, "A's answer is whole when its reader comes back"
    assert stalled.usage is not None and stalled.usage.completion_tokens >= 1


def test_usage_belongs_to_each_request_even_when_interleaved(llm: EmbeddedLLM) -> None:
    long_prompt = [{"role": "user", "content": "List the planets of the solar system, one per line."}]
    short = llm.stream(QUESTION, max_tokens=3, temperature=0.0)
    long = llm.stream(long_prompt, max_tokens=40, temperature=0.0)
    texts: dict[int, list[str]] = {id(short): [], id(long): []}
    open_streams = [long, short]
    while open_streams:  # read one delta of each in turn, as two browser sessions would
        for stream in list(open_streams):
            try:
                texts[id(stream)].append(next(stream))
            except StopIteration:
                open_streams.remove(stream)
    short_text, long_text = "".join(texts[id(short)]), "".join(texts[id(long)])
    assert len(texts[id(long)]) > len(texts[id(short)]) >= 1, "both were read, one delta at a time"
    assert short.usage is not None and long.usage is not None
    assert short.usage.completion_tokens <= 3 < long.usage.completion_tokens
    assert short.usage.prompt_tokens != long.usage.prompt_tokens
    assert short_text and long_text


def test_a_reader_that_stops_early_frees_the_model(llm: EmbeddedLLM) -> None:
    # A prompt the model answers at length (the earlier one got 27 tokens, too few for the timing to say anything).
    prompt = [{"role": "user", "content": "Write the numbers from 1 to 300, one per line."}]
    started = time.perf_counter()
    full = llm.stream(prompt, max_tokens=400, temperature=0.0)
    next(full)
    full.text()
    whole = time.perf_counter() - started
    assert full.usage and full.usage.completion_tokens >= 100, full.usage
    stopped = llm.stream(prompt, max_tokens=400, temperature=0.0)
    next(stopped)
    stopped.close()  # the user pressed stop
    started = time.perf_counter()
    assert llm.complete(QUESTION, max_tokens=4, temperature=0.0)
    assert time.perf_counter() - started < whole / 2, "the stopped request went on generating"


def test_missing_model_file_is_unavailable(tmp_path: Path) -> None:
    missing = EmbeddedLLM(tmp_path / "nope.gguf")
    ok, detail = missing.health()
    assert not ok and "nope.gguf" in detail and "does not exist" in detail
    with pytest.raises(LLMUnavailable, match="does not exist"):
        missing.complete(QUESTION)


def test_loading_prints_nothing_to_stdout() -> None:
    """A fresh process: the first load must not spray llama.cpp's log over stdout (it would corrupt --json)."""
    code = (
        "from rag.llm import get_llm\n"
        "llm = get_llm()\n"
        "text = llm.complete([{'role': 'user', 'content': 'Say hi'}], max_tokens=4, temperature=0.0)\n"
        "print('ANSWER:' + repr(text))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ANSWER:") and len(lines[0]) > len("ANSWER:''"), result.stdout
    assert "llama_model_loader" not in result.stderr and "llm_load" not in result.stderr, result.stderr[:2000]
    assert "Exception ignored" not in result.stderr, result.stderr[:2000]


def test_llama_cpp_uses_the_best_instruction_set_of_this_cpu() -> None:
    """The Makefile's build carries one CPU backend per x86 level and loads the best one at run time: on an
    AVX-512 machine (this one) that must be an AVX-512 backend, not the portable AVX2 one."""
    from rag.llm.embedded import load_cpu_backends

    features = set(load_cpu_backends().split())
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert "AVX2" in features or "avx2" not in flags
    if "avx512f" in flags:
        assert "AVX512" in features, features
    if "avx512_vnni" in flags:
        assert "AVX512_VNNI" in features, features


def test_warming_evaluates_the_prompt_head_that_the_next_prompt_reuses() -> None:
    """A model of its own (n_ctx 1536: no other test's prompt sits in its KV cache)."""
    from llama_cpp import Llama

    from rag.answer.answerer import prompt_head, warm_up

    llm = EmbeddedLLM(model_name=SMALL_MODEL, n_ctx=1536)
    messages = [*prompt_head(), {"role": "user", "content": "Passages:\n[1] (a.md)\n<<<\nTesla died on 7 January "
                                                            "1943.\n>>>\n\nQuestion: When did Tesla die?"}]
    warm_up(llm)
    loaded = embedded_module._load(llm.model_path, 1536, llm._n_threads)
    warmed = loaded.llama.n_tokens
    assert warmed > 200, "the rules and worked examples were evaluated"
    full = loaded.render(messages)[1]  # the prompt as the answer step renders it
    assert Llama.longest_token_prefix(loaded.llama._input_ids[:warmed].tolist(), full) == warmed, \
        "every warmed token opens the real prompt, so llama.cpp keeps them all"
    after_warming = llm.complete(messages, max_tokens=16, temperature=0.0)
    llm.complete([{"role": "user", "content": "Say hello."}], max_tokens=4, temperature=0.0)  # another prompt between
    assert llm.complete(messages, max_tokens=16, temperature=0.0) == after_warming, "warming changes no answer"
    answered = loaded.llama._input_ids[: loaded.llama.n_tokens].tolist()
    warm_up(llm)
    assert loaded.llama._input_ids[: loaded.llama.n_tokens].tolist() == answered, "a model in use is left as it is"


def test_a_reply_is_read_and_each_token_scored_without_being_written(llm: EmbeddedLLM) -> None:
    written = llm.stream(QUESTION, max_tokens=12, temperature=0.0)
    reply = written.text()
    assert written.token_probs is not None and reply
    read = llm.reply_logprobs(QUESTION, reply)
    assert read is not None
    assert [math.exp(p) for p in read[: len(written.token_probs.tokens)]] == pytest.approx(
        [p for _, p in written.token_probs.tokens], abs=1e-3), (
        "read in one batch, each token scores as the model scored it when writing it (no token shifted)")
    assert llm.complete(QUESTION, max_tokens=12, temperature=0.0) == reply, "reading leaves the cache consistent"
    right, wrong = llm.reply_logprobs(QUESTION, "Paris"), llm.reply_logprobs(QUESTION, "Berlin")
    assert right is not None and wrong is not None and all(p <= 0 for p in right + wrong)
    assert sum(right) > sum(wrong) + 2, "the capital is far likelier than another city"
    longer = llm.reply_logprobs(QUESTION, "The capital of France is Paris.")
    assert longer is not None and len(longer) == llm.count_tokens("The capital of France is Paris.")
    assert llm.reply_logprobs(QUESTION, "Paris") == pytest.approx(right, abs=0.05), (
        "the same after another prompt (read from llama.cpp's cache or afresh)")
    assert llm.reply_logprobs(QUESTION, "") == []
    assert llm.complete(QUESTION, max_tokens=8, temperature=0.0), "the model writes again after being made to read"
