"""What every LLM backend does alike, run once per backend: the embedded one (llama.cpp in-process on
SmolLM2-135M) and the openai one against a real vLLM server (marked ``vllm``, so ``-m "not vllm"`` leaves it out).
What only one backend does is tested in ``test_llm_embedded.py`` and ``test_llm_openai.py``."""

from __future__ import annotations

import pytest

from rag.llm import LLM, EmbeddedLLM, OpenAILLM
from tests.conftest import SMALL_MODEL

QUESTION = [
    {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
]


@pytest.fixture(params=["embedded", pytest.param("openai", marks=pytest.mark.vllm)])
def llm(request: pytest.FixtureRequest) -> LLM:
    if request.param == "embedded":
        return EmbeddedLLM(model_name=SMALL_MODEL)  # one model per process: loaded once for all the tests
    server = request.getfixturevalue("vllm_server")
    return OpenAILLM(base_url=server.base_url, model=server.model, api_key=server.api_key)


def test_max_tokens_bounds_the_answer_and_greedy_is_repeatable(llm: LLM) -> None:
    assert isinstance(llm, LLM)
    generation = llm.stream(QUESTION, max_tokens=5, temperature=0.0)
    first = generation.text()
    assert generation.usage is not None and 1 <= generation.usage.completion_tokens <= 5
    assert first == llm.complete(QUESTION, max_tokens=5, temperature=0.0)


def test_stop_sequence_ends_the_answer(llm: LLM) -> None:
    prompt = [{"role": "user", "content": "Write two sentences about the sea."}]
    full = llm.complete(prompt, max_tokens=40, temperature=0.0)
    words = full.split()
    assert len(words) >= 4, full
    stop = words[len(words) // 2]  # a word the greedy answer is known to reach
    stopped = llm.complete(prompt, max_tokens=40, temperature=0.0, stop=[stop])
    assert stopped == full[: full.index(stop)]
    assert len(stopped) < len(full)
