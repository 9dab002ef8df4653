"""The HTTP API's own cost, and how it holds up under concurrent clients, beside the same answers asked in-process.

    python bench/api.py                          # the embedded model: overhead, then 1, 4 and 16 clients
    python bench/api.py --start-vllm             # the same on a vLLM server started for the run (scripts/vllm.sh)
    python bench/api.py --vllm-url URL --vllm-model NAME   # ... on a running one (key: RAG_LLM_API_KEY)
    python bench/api.py --clients 1,4 --model smollm2-135m --json

Both sides answer the sample questions (data/sample/questions.json) from a scratch index of data/sample, with the
same settings and model:
- **overhead**: each question asked in this process (``Service.ask``) and through ``POST /v1/chat/completions``
  with ``stream: true`` on a ``python -m rag.api`` child on loopback, in turns, ``--rounds`` times. A question is
  asked once on each side before it is timed, so each side's model holds the prompt in its cache (llama.cpp keeps
  the last prompt's KV; vLLM caches prefixes) and the time to the first token is retrieval plus one step of the
  model: small and steady, so the difference between the two sides is the API's (HTTP, JSON, the queue, server-sent
  events), not the noise of prompt evaluation. Medians per side and their difference.
- **clients**: N threads, each asking ``--per-client`` questions at once through the API (streamed, httpx). A 429
  (the queue for the model is full) is retried after its ``Retry-After``, as a client should; the figures count
  from the first try. Requests/s, time to the first token and to the last (p50/p95), retries, errors, the
  server's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.llm import StartedServer  # noqa: E402
from rag.answer.answerer import Delta, Finished  # noqa: E402
from rag.llm import LLM, get_llm  # noqa: E402
from rag.service import Service  # noqa: E402
from rag.settings import Settings  # noqa: E402

# The model the settings choose, read before the test helpers load: tests/conftest.py makes the small model the
# default of the test processes it is imported into.
DEFAULT_MODEL = Settings().embedded_model
from tests.fixtures_api import ApiServer, serve_api  # noqa: E402 - the API as the tests start it

SAMPLE = ROOT / "data" / "sample"
QUESTIONS = [q["question"] for q in json.loads((SAMPLE / "questions.json").read_text())]


@dataclass
class Timing:
    first_s: float  # to the first answer text
    last_s: float  # to the end of the answer
    retries: int = 0  # 429s before it was taken


@dataclass
class Row:
    backend: str
    what: str  # "in-process, warm pairs", "API, warm pairs", or "API, N clients at once"
    requests: int
    errors: int = 0
    retries: int = 0
    wall_s: float = 0.0
    first_p50: float = 0.0
    first_p95: float = 0.0
    last_p50: float = 0.0
    last_p95: float = 0.0
    rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return (self.requests - self.errors) / self.wall_s if self.wall_s else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def summarise(backend: str, what: str, timings: list[Timing], errors: int, wall_s: float) -> Row:
    firsts, lasts = [t.first_s for t in timings], [t.last_s for t in timings]
    return Row(backend, what, len(timings) + errors, errors, sum(t.retries for t in timings), wall_s,
               percentile(firsts, 0.5), percentile(firsts, 0.95), percentile(lasts, 0.5), percentile(lasts, 0.95))


def ask_in_process(service: Service, llm: LLM, question: str) -> Timing:
    started = time.perf_counter()
    first = None
    for event in service.ask(question, llm=llm):
        if isinstance(event, Delta) and first is None and event.text.strip():
            first = time.perf_counter() - started
        elif isinstance(event, Finished):
            break
    last = time.perf_counter() - started
    return Timing(first if first is not None else last, last)


def ask_api(client: httpx.Client, model: str, question: str, deadline_s: float = 1800) -> Timing:
    """One streamed chat completion; a 429 waits for its Retry-After and tries again (time counts from the first
    try). Raises on any other error."""
    started = time.perf_counter()
    retries = 0
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": question}]}
    while True:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code == 429 and time.perf_counter() - started < deadline_s:
                retries += 1
                response.read()
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.read().decode()[:300]}")
            first = None
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                delta = (chunk.get("choices") or [{}])[0].get("delta", {})
                if first is None and (delta.get("content") or "").strip():
                    first = time.perf_counter() - started
            last = time.perf_counter() - started
            return Timing(first if first is not None else last, last, retries)


def overhead(backend: str, service: Service, llm: LLM, api: ApiServer, model: str, rounds: int) -> list[Row]:
    """Each question on both sides in turns, after one untimed ask on each."""
    local: list[Timing] = []
    remote: list[Timing] = []
    with api.client() as client:
        for question in QUESTIONS:
            ask_in_process(service, llm, question)
            ask_api(client, model, question)
            for _ in range(rounds):
                local.append(ask_in_process(service, llm, question))
                remote.append(ask_api(client, model, question))
    wall_local = sum(t.last_s for t in local)
    wall_remote = sum(t.last_s for t in remote)
    rows = [summarise(backend, "in-process, warm pairs", local, 0, wall_local),
            summarise(backend, "API, warm pairs", remote, 0, wall_remote)]
    diffs = [r.first_s - lo.first_s for lo, r in zip(local, remote, strict=True)]
    rows[1].notes.append(f"API overhead on the first token: median {1000 * statistics.median(diffs):+.0f} ms "
                         f"(paired, {len(diffs)} asks; p50 {1000 * (rows[1].first_p50 - rows[0].first_p50):+.0f} ms)")
    return rows


def clients(backend: str, api: ApiServer, model: str, n: int, per_client: int) -> Row:
    timings: list[Timing] = []
    errors: list[str] = []
    lock = threading.Lock()
    peak = [api.rss_mb()]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.5):
            peak[0] = max(peak[0], api.rss_mb())

    def client_thread(i: int) -> None:
        with api.client() as client:
            for j in range(per_client):
                try:
                    t = ask_api(client, model, QUESTIONS[(i + j) % len(QUESTIONS)])
                except Exception as exc:  # noqa: BLE001 - counted and shown, the others go on
                    with lock:
                        errors.append(str(exc))
                    continue
                with lock:
                    timings.append(t)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    done.set()
    row = summarise(backend, f"API, {n} client{'' if n == 1 else 's'} at once", timings, len(errors), wall)
    row.rss_mb = peak[0]
    if errors:
        row.notes.append(f"first error: {errors[0][:200]}")
    return row


def run_backend(backend: str, env: dict[str, str], args: argparse.Namespace, work: Path) -> list[Row]:
    settings = Settings(**{k[4:].lower(): v for k, v in env.items() if k.startswith("RAG_")})
    service = Service.open(settings)
    if not service.documents():
        report = service.add([SAMPLE])
        print(f"indexed {len(report.added)} sample files", file=sys.stderr)
    llm = get_llm(settings)  # loaded once, as the page and the API server keep theirs
    folder = Path(env["RAG_INDEX_DIR"]).parent
    with serve_api(folder, **env) as api:
        with api.client() as c:
            model = c.get("/v1/models").json()["data"][0]["id"]
        print(f"{backend}: overhead ({args.rounds} rounds of {len(QUESTIONS)} questions) ...", file=sys.stderr)
        rows = overhead(backend, service, llm, api, model, args.rounds)
        for n in args.clients:
            print(f"{backend}: {n} clients x {args.per_client} ...", file=sys.stderr)
            rows.append(clients(backend, api, model, n, args.per_client))
    service.close()
    return rows


def table(rows: list[Row]) -> str:
    head = ("| backend | requests | errors | 429 retries | req/s | first token p50 / p95 (s) | last token p50 / p95 (s)"
            " | server RSS (MB) |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        rss = f"{r.rss_mb:.0f}" if r.rss_mb is not None else ""
        lines.append(f"| {r.backend}, {r.what} | {r.requests} | {r.errors} | {r.retries} | {r.per_s:.2f} | "
                     f"{r.first_p50:.3f} / {r.first_p95:.3f} | {r.last_p50:.2f} / {r.last_p95:.2f} | {rss} |")
    notes = [f"- {r.backend}, {r.what}: {n}" for r in rows for n in r.notes]
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,16", help="concurrent client counts (default 1,4,16)")
    parser.add_argument("--per-client", type=int, default=1, help="questions each client asks (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="timed asks per question and side (default 3)")
    parser.add_argument("--model", default=None, help="the embedded model (default: the settings')")
    parser.add_argument("--no-embedded", action="store_true", help="only the vLLM server")
    parser.add_argument("--start-vllm", action="store_true", help="start scripts/vllm.sh for the run")
    parser.add_argument("--vllm-url", default=None, help="a running vLLM server's /v1 URL")
    parser.add_argument("--vllm-model", default="smollm2-135m", help="the model it serves")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    args.clients = [int(n) for n in args.clients.split(",") if n.strip()]

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    server: StartedServer | None = None
    try:
        if not args.no_embedded:
            env = {"RAG_INDEX_DIR": str(work / "embedded" / "index"), "RAG_LLM": "embedded",
                   "RAG_API_CONCURRENCY": "1", "RAG_API_QUEUE": "8",
                   "RAG_EMBEDDED_MODEL": args.model or DEFAULT_MODEL}
            rows += run_backend("embedded", env, args, work)
        if args.start_vllm or args.vllm_url:
            if args.start_vllm:
                server = StartedServer()
                url, key = server.base_url, server.api_key
            else:
                url, key = args.vllm_url, os.environ.get("RAG_LLM_API_KEY", "local-dev-key")
            env = {"RAG_INDEX_DIR": str(work / "vllm" / "index"), "RAG_LLM": "openai", "RAG_LLM_URL": url,
                   "RAG_LLM_MODEL": args.vllm_model, "RAG_LLM_API_KEY": key,
                   "RAG_API_CONCURRENCY": "16", "RAG_API_QUEUE": "16"}
            rows += run_backend("vLLM", env, args, work)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"rows": [asdict(r) | {"per_s": r.per_s} for r in rows],
                          "load": [load_before, load_after]}, indent=2))
    else:
        print(table(rows))
        print(f"\nload average {load_before:.1f} before, {load_after:.1f} after; {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
