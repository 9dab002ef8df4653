"""The ``embedded`` backend for real: llama.cpp in-process on the bundled SmolLM2-135M-Instruct GGUF."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rag.llm import LLM, EmbeddedLLM, LLMRequestError, LLMUnavailable, Usage, get_llm
from rag.llm import embedded as embedded_module
from rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(scope="module")
def llm() -> EmbeddedLLM:
    return EmbeddedLLM()


def test_get_llm_defaults_to_embedded() -> None:
    llm = get_llm(Settings())
    assert isinstance(llm, EmbeddedLLM) and isinstance(llm, LLM)
    assert llm.backend == "embedded"
    assert llm.model == "SmolLM2-135M-Instruct.Q4_1"
    assert llm.context_window == 2048


def test_health_checks_without_loading() -> None:
    fresh = EmbeddedLLM(n_ctx=1024)  # a configuration nobody loaded: health must not load it
    ok, detail = fresh.health()
    assert ok, detail
    assert "loads on first question" in detail and "1024" in detail
    assert not fresh.loaded


def test_streams_text_deltas_and_sets_usage(llm: EmbeddedLLM) -> None:
    deltas = list(llm.stream(QUESTION, max_tokens=24, temperature=0.0))
    assert len(deltas) > 1, "a stream should arrive in several deltas"
    text = "".join(deltas)
    assert text.strip()
    # The ChatML template was applied and its end-of-turn token stopped or was stripped from the answer.
    assert "<|im_start|>" not in text and "<|im_end|>" not in text
    usage = llm.last_usage
    assert isinstance(usage, Usage)
    # Exact prompt count: the template wraps both messages in role markers, so more than their word count.
    rendered = (
        "<|im_start|>system\nYou are a helpful assistant. Answer briefly.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    llama = llm._model().llama
    assert usage.prompt_tokens == len(llama.tokenize(rendered.encode(), add_bos=False, special=True))
    assert 1 <= usage.completion_tokens <= 24


def test_max_tokens_bounds_the_answer_and_greedy_is_repeatable(llm: EmbeddedLLM) -> None:
    first = llm.complete(QUESTION, max_tokens=6, temperature=0.0)
    assert llm.last_usage is not None and llm.last_usage.completion_tokens <= 6
    assert first == llm.complete(QUESTION, max_tokens=6, temperature=0.0)


def test_stop_sequence_ends_the_answer(llm: EmbeddedLLM) -> None:
    prompt = [{"role": "user", "content": "Write two sentences about the sea."}]
    full = llm.complete(prompt, max_tokens=40, temperature=0.0)
    words = full.split()
    assert len(words) >= 4, full
    stop = words[len(words) // 2]  # a word the greedy answer is known to reach
    stopped = llm.complete(prompt, max_tokens=40, temperature=0.0, stop=[stop])
    assert stopped == full[: full.index(stop)]
    assert len(stopped) < len(full)


def test_one_model_instance_per_process(llm: EmbeddedLLM) -> None:
    other = get_llm(Settings(temperature=0.7))
    other.count_tokens("load it")
    assert llm.loaded and other.loaded  # type: ignore[attr-defined]
    assert llm._model() is other._model()  # type: ignore[attr-defined]
    assert len(embedded_module._loaded) == 1


def test_count_tokens_uses_the_model_tokenizer(llm: EmbeddedLLM) -> None:
    assert llm.count_tokens("") == 0
    assert llm.count_tokens("Paris") == 1
    long = "Retrieval-augmented generation grounds answers in passages. " * 20
    assert 100 < llm.count_tokens(long) < len(long) // 3


def test_prompt_over_the_context_window_is_a_clear_error(llm: EmbeddedLLM) -> None:
    huge = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(LLMRequestError, match=r"the prompt is \d+ tokens, more than the model's context window of 2048"):
        llm.complete(huge)


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
