"""The embeddings backend for an OpenAI-compatible server, against a real vLLM serving the bundled MiniLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.index.embed_server import EmbeddingServerError, ServerEmbedder
from rag.index.embedder import OnnxEmbedder
from tests.conftest import ROOT, XQUAD_DOCS
from tests.fixtures_llm import free_port


def _cli(module: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.vllm
def test_served_vectors_equal_the_local_float32_vectors(vllm_embedding_server) -> None:
    server = ServerEmbedder(vllm_embedding_server.base_url, vllm_embedding_server.model,
                            vllm_embedding_server.api_key)
    long_text = (XQUAD_DOCS / sorted(p.name for p in XQUAD_DOCS.iterdir())[0]).read_text()[:4000]
    texts = ["How many points did the Panthers defense surrender?", "x", long_text]  # the last is over 256 tokens
    assert server.count_tokens(long_text) > server.max_tokens, "the long text is cut before it is sent"
    assert server.dim == 384 and server.name == "all-MiniLM-L6-v2" == OnnxEmbedder().name
    served = server.embed(texts, batch_size=2)
    assert np.allclose(served, OnnxEmbedder().embed(texts), atol=1e-4)
    assert np.allclose(server.embed_query(texts[0]), served[0], atol=1e-5)


@pytest.mark.vllm
def test_ingest_and_search_through_the_server_and_no_mixing(tmp_path: Path, vllm_embedding_server) -> None:
    index = str(tmp_path / "index")
    server = {"RAG_EMBED_URL": vllm_embedding_server.base_url, "RAG_EMBED_API_KEY": vllm_embedding_server.api_key}
    ingest = _cli("ingest", str(XQUAD_DOCS), "--index", index, "--json", **server)
    assert ingest.returncode == 0, ingest.stderr[-2000:]
    assert json.loads(ingest.stdout)["chunks"] > 10
    question = "How many points did the Panthers defense surrender?"
    served = _cli("rag.search", question, "--index", index, "--json", **server)
    assert served.returncode == 0, served.stderr[-2000:]
    assert json.loads(served.stdout)[0]["source"] == "Super_Bowl_50.md"

    # The same model run locally in float32 makes the same vectors: the index accepts it, with the same answer.
    local = _cli("rag.search", question, "--index", index, "--json", RAG_EMBED_BACKEND="onnx")
    assert local.returncode == 0, local.stderr[-2000:]
    assert [h["chunk_id"] for h in json.loads(local.stdout)] == [h["chunk_id"] for h in json.loads(served.stdout)]
    # The int8 model does not: its vectors are never mixed into this index, nor compared with them.
    int8 = _cli("rag.search", question, "--index", index, "--json", RAG_EMBED_BACKEND="onnx-int8")
    assert int8.returncode == 2 and "built with embedding model all-MiniLM-L6-v2 " in int8.stderr


def test_a_server_that_does_not_answer_stops_the_command_with_its_address(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("The ferry leaves at seven.")
    result = _cli("ingest", str(tmp_path / "docs"), "--index", str(tmp_path / "index"), RAG_EMBED_URL=url)
    assert result.returncode == 2
    assert f"cannot reach the embeddings server at {url}" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(EmbeddingServerError, match="cannot reach"):
        ServerEmbedder(url, "all-MiniLM-L6-v2").embed(["x"])
