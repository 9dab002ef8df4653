"""The HTTP API, served for real (``python -m rag.api`` under uvicorn on a loopback port) and called by real clients:
the official ``openai`` client and LangChain's ``ChatOpenAI``, unmodified but for ``base_url`` and ``api_key``;
httpx for what those clients do not send (uploads, odd names, oversized bodies, bad keys, a client that leaves).
The index holds two articles, uploaded over HTTP; the chat model is the 135M one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, XQUAD_DOCS
from tests.fixtures_api import KEY, OTHER_KEY, ApiServer, serve_api
from tests.fixtures_llm import free_port

SETTINGS = {"RAG_TOP_K": "3", "RAG_API_QUEUE": "2", "RAG_API_MAX_TOKENS": "48", "RAG_MAX_UPLOAD_MB": "1",
            "RAG_API_MAX_BODY_MB": "3", "RAG_API_MAX_JSON_KB": "64"}
QUESTION = "What is Warsaw?"


def upload(server: ApiServer, files: list[tuple[str, bytes]], key: str | None = KEY) -> httpx.Response:
    with server.client(key) as c:
        return c.post("/v1/documents", files=[("files", (name, data, "application/octet-stream"))
                                              for name, data in files])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    folder = tmp_path_factory.mktemp("api")
    with serve_api(folder, **SETTINGS) as server:
        response = upload(server, [(p.name, p.read_bytes()) for p in (XQUAD_DOCS / "Warsaw.md",
                                                                        XQUAD_DOCS / "Oxygen.md")])
        assert response.status_code == 200, response.text
        assert response.json()["added"] == 2 and response.json()["failed"] == []
        yield server


def openai_client(server: ApiServer, key: str = KEY):  # noqa: ANN201 - an openai.OpenAI
    from openai import OpenAI

    return OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=600)


# --- starting safely ---------------------------------------------------------------------------------------------

def test_without_a_key_it_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    env = {**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_API_KEYS": "", "PYTHONPATH": str(ROOT)}
    env.pop("RAG_API_KEYS_FILE", None)
    done = subprocess.run([sys.executable, "-m", "rag.api", "--host", "0.0.0.0", "--port", str(free_port())],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "RAG_API_KEYS" in done.stderr and "0.0.0.0" in done.stderr
    assert not (tmp_path / "index").exists()  # refused before the index was opened


# --- keys, sizes, names ------------------------------------------------------------------------------------------

def test_a_missing_or_wrong_key_is_refused_before_the_index_is_touched(api: ApiServer) -> None:
    before = sorted(p.name for p in (api.folder / "uploads").iterdir())
    for key in (None, "wrong-key", KEY + "x"):
        with api.client(key) as c:
            for method, path in [("GET", "/health"), ("GET", "/v1/documents"), ("DELETE", "/v1/documents/1"),
                                 ("POST", "/v1/search")]:
                response = c.request(method, path, json={"query": "Warsaw"} if method == "POST" else None)
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["error"]["type"] == "authentication_error"
        assert upload(api, [("new.md", b"# New\n\nA document nobody may add.")], key).status_code == 401
    assert sorted(p.name for p in (api.folder / "uploads").iterdir()) == before
    with api.client(None) as c:
        assert c.get("/openapi.json").status_code == 200  # the description is public; it names no document
    with api.client(OTHER_KEY) as c:  # every configured key works
        assert c.get("/v1/documents").status_code == 200
    import openai

    with pytest.raises(openai.AuthenticationError):
        openai_client(api, "wrong-key").models.list()


def test_uploads_with_odd_names_stay_in_the_upload_folder_under_safe_names(api: ApiServer) -> None:
    uploads = api.folder / "uploads"
    text = b"# Ledger\n\nThe quarterly ledger of the lighthouse keepers' guild lists 17 lamps."
    response = upload(api, [("../../escaped.md", text), ("..\\..\\windows.md", text + b" Second."),
                            (".hidden.md", text + b" Third."), ("tab\tand\x00null.md", text + b" Fourth."),
                            ("program.exe", b"MZ")])
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["added"] == 4
    assert [(f["path"], f["type"]) for f in report["failed"]] == [("program.exe", "UploadError")]
    assert not (api.folder.parent / "escaped.md").exists() and not (api.folder / "escaped.md").exists()
    names = {d["name"] for d in httpx.get(f"{api.base_url}/documents", headers={"Authorization": f"Bearer {KEY}"})
             .json()["data"]}
    assert {"escaped.md", "windows.md", "hidden.md"} <= names
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".") and "\x00" not in name
    kept = {p.name for p in uploads.iterdir()}
    assert names <= kept and "program.exe" not in kept
    assert all(p.resolve().parent == uploads.resolve() for p in uploads.iterdir())
    with api.client() as c:  # leave the index as the other tests expect it
        for name in names - {"Warsaw.md", "Oxygen.md"}:
            assert c.delete(f"/v1/documents/{name}").json()["removed"] == 1


def test_bodies_over_the_limits_are_refused_with_413(api: ApiServer) -> None:
    with api.client() as c:
        big_json = {"query": "x" * 100_000, "k": 3}  # over RAG_API_MAX_JSON_KB=64
        response = c.post("/v1/search", json=big_json)
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    over_file = upload(api, [("large.txt", b"word " * 300_000)])  # 1.5 MB: over RAG_MAX_UPLOAD_MB=1, as the page
    assert over_file.status_code == 413, over_file.text
    assert over_file.json()["error"]["report"]["failed"][0]["type"] == "UploadError"
    over_request = upload(api, [(f"part{i}.txt", b"word " * 200_000) for i in range(4)])  # 4 MB: over 3 MB
    assert over_request.status_code == 413
    assert not (api.folder / "uploads" / "large.txt").exists() and not (api.folder / "uploads" / "part0.txt").exists()


def test_errors_have_openais_shape_and_status(api: ApiServer) -> None:
    with api.client() as c:
        cases = [
            (c.post("/v1/chat/completions", json={"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]}),
             404, "model_not_found"),
            (c.post("/v1/chat/completions", json={"model": "rag", "messages": []}), 400, "invalid_value"),
            (c.post("/v1/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": "q"}],
                                                  "temperature": 7}), 400, "invalid_value"),
            (c.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}),
             400, "invalid_value"),
            (c.post("/v1/chat/completions", json={"model": "rag", "messages": [{"role": "assistant",
                                                                                "content": "hi"}]}),
             400, "invalid_messages"),
            (c.delete("/v1/documents/no-such.pdf"), 404, "document_not_found"),
            (c.get("/v1/nothing-here"), 404, "not_found"),
        ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code and error["message"] and error["type"]


def test_models_documents_and_search(api: ApiServer) -> None:
    client = openai_client(api)
    assert [m.id for m in client.models.list()] == ["rag", "rag-agent"]
    with api.client() as c:
        docs = c.get("/v1/documents").json()["data"]
        assert {d["name"] for d in docs} == {"Warsaw.md", "Oxygen.md"}
        rows = c.post("/v1/search", json={"query": "Who discovered oxygen?", "k": 2}).json()
        health = c.get("/health").json()
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["source"] == "Oxygen.md"
    assert {"rank", "score", "source", "page", "chunk_id", "text"} <= set(rows[0])
    assert health["index"]["documents"] == 2 and health["index"]["chunks"] == sum(d["chunks"] for d in docs)
    assert health["model"]["ok"] and health["model"]["backend"] == "embedded" and health["auth"] is True


# --- answers, with real clients ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_openai_client_gets_answers_with_citations_plain_and_streamed(api: ApiServer) -> None:
    client = openai_client(api)
    messages = [{"role": "user", "content": QUESTION}]
    plain = client.chat.completions.create(model="rag", messages=messages, max_tokens=40)
    rag = plain.model_extra["rag"]
    text = plain.choices[0].message.content
    assert text and text == rag["answer"]
    assert rag["citations"] and {c["source"] for c in rag["citations"]} == {"Warsaw.md"}
    assert {"n", "source", "page", "text", "support"} <= set(rag["citations"][0])
    assert {"refused", "refused_by", "verified", "checks"} <= set(rag)
    assert plain.usage.prompt_tokens > 0

    chunks = list(client.chat.completions.create(model="rag", messages=messages, max_tokens=40, stream=True,
                                                 stream_options={"include_usage": True}))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    last = chunks[-1]
    assert "rag" in last.model_extra and all("rag" not in ch.model_extra for ch in chunks[:-1])
    assert last.choices[0].finish_reason in ("stop", "length")
    assert streamed and streamed == last.model_extra["rag"]["answer"]  # the content streamed is the answer
    assert {c["source"] for c in last.model_extra["rag"]["citations"]} == {"Warsaw.md"}

    follow_up = client.chat.completions.create(model="rag", max_tokens=40, messages=[
        *messages, {"role": "assistant", "content": text}, {"role": "user", "content": "What river flows through it?"}])
    assert {c["source"] for c in follow_up.model_extra["rag"]["citations"]} == {"Warsaw.md"}  # "it": Warsaw


@pytest.mark.slow
def test_langchain_chat_openai_works_unmodified(api: ApiServer) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(base_url=api.base_url, api_key=KEY, model="rag", max_tokens=40, max_retries=0, timeout=600)
    reply = chat.invoke(QUESTION)
    assert isinstance(reply.content, str) and reply.content
    assert "".join(str(chunk.content) for chunk in chat.stream(QUESTION)) == reply.content


@pytest.mark.slow
def test_upload_ask_cite_delete_over_http(api: ApiServer) -> None:
    doc = XQUAD_DOCS / "Super_Bowl_50.md"
    assert upload(api, [(doc.name, doc.read_bytes())]).json()["added"] == 1
    reply = openai_client(api).chat.completions.create(
        model="rag", max_tokens=40, messages=[{"role": "user", "content": "Which team won Super Bowl 50?"}])
    assert "Super_Bowl_50.md" in {c["source"] for c in reply.model_extra["rag"]["citations"]}
    with api.client() as c:
        listed = {d["name"]: d["id"] for d in c.get("/v1/documents").json()["data"]}
        deleted = c.delete(f"/v1/documents/{listed['Super_Bowl_50.md']}")  # by numeric id
        assert deleted.status_code == 200 and deleted.json()["removed"] == 1
        assert "Super_Bowl_50.md" not in {d["name"] for d in c.get("/v1/documents").json()["data"]}
        rows = c.post("/v1/search", json={"query": "Super Bowl 50 Denver Broncos", "k": 5}).json()
        assert "Super_Bowl_50.md" not in {r["source"] for r in rows}
        assert c.delete("/v1/documents/Super_Bowl_50.md").status_code == 404
    assert not (api.folder / "uploads" / "Super_Bowl_50.md").exists()


@pytest.mark.slow
def test_sixteen_concurrent_clients_are_answered_or_told_to_retry(api: ApiServer) -> None:
    import openai

    openai_client(api).chat.completions.create(model="rag", max_tokens=16,
                                               messages=[{"role": "user", "content": QUESTION}])  # model loaded
    before = api.rss_mb()
    outcomes: list[object] = []

    def ask(i: int) -> None:
        try:
            reply = openai_client(api).chat.completions.create(
                model="rag", max_tokens=16, stream=i % 2 == 1,
                messages=[{"role": "user", "content": f"{QUESTION} ({i})"}])
            outcomes.append("".join(ch.choices[0].delta.content or "" for ch in reply if ch.choices)
                            if i % 2 else reply.choices[0].message.content)
        except openai.RateLimitError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    answered = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, openai.RateLimitError)]
    assert len(outcomes) == 16 and len(answered) + len(refused) == 16  # nothing else: no 5xx, no hang
    assert 1 <= len(answered) <= 3 and all(answered)  # one answering + RAG_API_QUEUE=2 waiting
    assert all(int(e.response.headers["Retry-After"]) >= 1 for e in refused)
    health = api.health()
    assert health["queue"]["running"] == 0 and health["queue"]["waiting"] == 0
    assert api.rss_mb() - before < 150, (before, api.rss_mb())


@pytest.mark.slow
def test_a_client_that_disconnects_mid_stream_stops_its_answer(api: ApiServer) -> None:
    cancelled = api.health()["queue"]["cancelled"]
    body = {"model": "rag", "stream": True, "max_tokens": 48,
            "messages": [{"role": "user", "content": "Describe Warsaw's history, culture and economy in detail."}]}
    with api.client() as c, c.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        contents = 0
        for line in response.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                contents += 1
                if contents == 2:
                    break  # leave with the answer half written
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and api.health()["queue"]["running"]:
        time.sleep(0.2)
    health = api.health()
    assert health["queue"]["running"] == 0
    assert health["queue"]["cancelled"] == cancelled + 1


# --- the description, fuzzed -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_every_response_matches_the_schema(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    folder = tmp_path_factory.mktemp("fuzz")
    with serve_api(folder, **{**SETTINGS, "RAG_API_MAX_TOKENS": "16"}) as server:
        upload(server, [("Oxygen.md", (XQUAD_DOCS / "Oxygen.md").read_bytes())])
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        headers = {"Authorization": f"Bearer {KEY}"}
        failures: list[str] = []
        for operation in schema.get_all_operations():
            op = operation.ok()

            @given(case=op.as_strategy())
            @settings(max_examples=6, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            def check(case) -> None:  # noqa: ANN001 - a schemathesis Case
                # Every check but "schema-valid data is accepted": an upload of a type the loaders do not read is
                # schema-valid and refused (400, as in the page), and a random id names no document (404).
                case.call_and_validate(base_url=server.url, headers=headers, timeout=300,
                                       excluded_checks=[positive_data_acceptance])

            try:
                check()
            except Exception as exc:  # noqa: BLE001 - gathered, so that one report names every operation that failed
                failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:1500]}")
        assert server.health()["status"] == "ok"
    assert not failures, "\n\n".join(failures)


def test_the_model_server_is_asked_once_for_a_run_of_questions_and_a_dead_one_answers_503(
    tmp_path: Path, scripted_server
) -> None:
    """Before a question the API checks the chat model (a vLLM server: ``GET /v1/models``), so a dead server is a
    503 before any stream starts; one that answered within seconds is not asked again (that round trip was most of
    the API's cost on vLLM's time to first token), and a failed check is not remembered."""
    from fastapi.testclient import TestClient

    from rag.api.app import create_app
    from rag.api.state import ServerState

    server = ServerState.open(scripted_server.settings(index_dir=tmp_path / "index"))
    scripted_server.models_asked = 0
    assert server.model_check()[0] and server.model_check()[0] and server.model_check()[0]
    assert scripted_server.models_asked == 1
    server.close()

    dead_url = f"http://127.0.0.1:{free_port()}/v1"
    settings = scripted_server.settings(index_dir=tmp_path / "index", llm_url=dead_url, llm_timeout=2.0)
    dead = ServerState.open(settings)
    assert not dead.model_check()[0] and not dead.model_check()[0], "a failure is asked again, not cached"
    with TestClient(create_app(settings, dead)) as client:
        reply = client.post("/v1/chat/completions", json={"model": "rag", "stream": True,
                                                          "messages": [{"role": "user", "content": QUESTION}]})
    assert reply.status_code == 503, reply.text
    error = reply.json()["error"]
    assert error["code"] == "model_unavailable" and "127.0.0.1" in error["message"]
    dead.close()
