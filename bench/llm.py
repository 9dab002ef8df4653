"""Benchmark the LLM backends side by side: time to first token, decode tokens/s, end-to-end answer latency.

    python -m bench.llm                       # embedded always; vLLM too if RAG_LLM_URL answers
    python -m bench.llm --start-vllm          # start scripts/vllm.sh on a free port for the run, stop it after
    python -m bench.llm --runs 5 --max-tokens 128 --json

The prompt is RAG-shaped (a system prompt, five retrieved passages, a question: ~700 prompt tokens), answered
greedily (temperature 0) so both backends do comparable work. One warm-up request per backend is not timed (it
includes the embedded model's load, reported on its own). Figures are medians over ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.llm import LLM, EmbeddedLLM, OpenAILLM  # noqa: E402
from rag.settings import get_settings  # noqa: E402

PASSAGES = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after "
    "the engineer Gustave Eiffel, whose company designed and built the tower from 1887 to 1889 as the centrepiece "
    "of the 1889 World's Fair. It is 330 metres tall, about the same height as an 81-storey building.",
    "Paris is the capital and largest city of France. The city is on the Seine river, in the north of the "
    "country, at the heart of the Ile-de-France region. Paris has been one of the world's major centres of "
    "finance, diplomacy, commerce, fashion and science since the 17th century.",
    "The Louvre is the world's most-visited art museum and a historic landmark in Paris. It holds some of the "
    "best-known works of art, including the Mona Lisa and the Venus de Milo. The museum opened on 10 August 1793 "
    "with an exhibition of 537 paintings, most of them royal and confiscated church property.",
    "The Seine is a 777-kilometre-long river in northern France. It rises at Source-Seine, north-west of Dijon, "
    "and flows through Paris into the English Channel at Le Havre. It is navigable by ocean-going vessels as far "
    "as Rouen, 120 kilometres from the sea.",
    "Gustave Eiffel was a French civil engineer. A graduate of the Ecole Centrale des Arts et Manufactures, he "
    "made his name building bridges for the French railway network, most famously the Garabit viaduct. He is "
    "best known for the world-famous Eiffel Tower and for his contribution to the Statue of Liberty.",
]
QUESTION = "Who designed the Eiffel Tower, and when was it built?"


def rag_messages(request_id: int = 0) -> list[dict[str, str]]:
    """The benchmark prompt. ``request_id`` opens it, so no two timed requests share a prefix: both backends
    cache the KV of a repeated prompt (llama.cpp its last prompt, vLLM by prefix caching), and a RAG question
    with new passages would not hit that cache, so TTFT here includes the full prefill."""
    context = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(PASSAGES, start=1))
    return [
        {
            "role": "system",
            "content": f"Request {request_id}. Answer the question using only the numbered passages. "
            "Cite passages like [1]. If the passages do not contain the answer, say you do not know.",
        },
        {"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {QUESTION}"},
    ]


@dataclass
class Result:
    backend: str
    model: str
    runs: int = 0
    load_s: float | None = None
    ttft_ms: float = 0.0
    tokens_per_s: float = 0.0
    e2e_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: float = 0.0
    rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)


def measure(llm: LLM, runs: int, max_tokens: int) -> Result:
    """One untimed warm-up, then ``runs`` timed greedy answers; medians."""
    result = Result(llm.backend, llm.model, runs)
    started = time.perf_counter()
    llm.complete(rag_messages(0), max_tokens=8, temperature=0.0)
    result.load_s = time.perf_counter() - started
    ttfts, rates, totals, completions = [], [], [], []
    for run in range(1, runs + 1):
        messages = rag_messages(run * 7919 + int(time.time()) % 100_000)
        started = time.perf_counter()
        first: float | None = None
        for _delta in llm.stream(messages, max_tokens=max_tokens, temperature=0.0):
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        usage = llm.last_usage
        if first is None or usage is None:
            raise SystemExit(f"{llm.backend}: no answer or no usage reported")
        ttfts.append((first - started) * 1000)
        totals.append(end - started)
        completions.append(usage.completion_tokens)
        result.prompt_tokens = usage.prompt_tokens
        # Decode rate: tokens after the first, over the time after the first.
        if usage.completion_tokens > 1 and end > first:
            rates.append((usage.completion_tokens - 1) / (end - first))
    result.ttft_ms = statistics.median(ttfts)
    result.e2e_s = statistics.median(totals)
    result.tokens_per_s = statistics.median(rates) if rates else 0.0
    result.completion_tokens = statistics.median(completions)
    return result


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (vLLM runs its engine in a child process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
        todo.extend(children.get(current, []))
    return total_kb / 1024


def self_rss_mb() -> float:
    return rss_mb(os.getpid())


class StartedServer:
    """``scripts/vllm.sh`` on a free loopback port for the length of the benchmark."""

    def __init__(self, timeout_s: float = 15 * 60) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.api_key = "bench-" + secrets.token_hex(8)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log = (ROOT / "test-artifacts" / "bench-vllm.log")
        self.log.parent.mkdir(exist_ok=True)
        env = {**os.environ, "PORT": str(self.port), "API_KEY": self.api_key, "HOST": "127.0.0.1"}
        started = time.perf_counter()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", str(ROOT / "scripts" / "vllm.sh")], env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        probe = OpenAILLM(self.base_url, os.environ.get("SERVED_NAME", "smollm2-135m"), self.api_key)
        print(f"starting vLLM on {self.base_url} (log {self.log}) ...", file=sys.stderr)
        while not probe.health()[0]:
            if self.process.poll() is not None:
                raise SystemExit(f"vLLM exited with {self.process.returncode}; see {self.log}")
            if time.perf_counter() - started > timeout_s:
                self.stop()
                raise SystemExit(f"vLLM not ready after {timeout_s:.0f} s; see {self.log}")
            time.sleep(2)
        self.start_s = time.perf_counter() - started
        print(f"vLLM ready in {self.start_s:.0f} s", file=sys.stderr)

    def stop(self) -> None:
        """SIGTERM its process group (pgid = the leader's pid: it was started in a new session), then SIGKILL."""
        pgid = self.process.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                self.process.poll()
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.5)


def print_table(results: list[Result]) -> None:
    rows = [
        ("backend", lambda r: r.backend),
        ("model", lambda r: r.model),
        ("prompt tokens", lambda r: str(r.prompt_tokens)),
        ("answer tokens (median)", lambda r: f"{r.completion_tokens:.0f}"),
        ("time to first token", lambda r: f"{r.ttft_ms:.0f} ms"),
        ("decode tokens/s", lambda r: f"{r.tokens_per_s:.1f}"),
        ("end-to-end answer", lambda r: f"{r.e2e_s:.2f} s"),
        ("warm-up (incl. load)", lambda r: f"{r.load_s:.2f} s" if r.load_s is not None else "-"),
        ("RSS", lambda r: f"{r.rss_mb:.0f} MB" if r.rss_mb is not None else "-"),
    ]
    width = max(len(name) for name, _ in rows)
    cols = [[fmt(r) for r in results] for _, fmt in rows]
    colw = max(len(cell) for col in cols for cell in col)
    for (name, _), col in zip(rows, cols):
        print(f"{name:<{width}}  " + "  ".join(f"{cell:>{colw}}" for cell in col))
    for r in results:
        for note in r.notes:
            print(f"note ({r.backend}): {note}")


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--url", default=settings.llm_url, help="vLLM base URL (default RAG_LLM_URL)")
    parser.add_argument("--model", default=settings.llm_model)
    parser.add_argument("--api-key", default=settings.llm_api_key)
    parser.add_argument("--start-vllm", action="store_true", help="start scripts/vllm.sh for this run")
    parser.add_argument("--no-vllm", action="store_true", help="embedded backend only")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads for the embedded backend")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)

    results: list[Result] = []
    load_before = os.getloadavg()[0]
    print("embedded backend ...", file=sys.stderr)
    before = self_rss_mb()
    embedded = measure(EmbeddedLLM(n_threads=args.threads), args.runs, args.max_tokens)
    embedded.rss_mb = self_rss_mb() - before
    embedded.notes.append(f"{args.threads} llama.cpp threads; RSS = growth of this process from loading the model")
    results.append(embedded)

    server: StartedServer | None = None
    if not args.no_vllm:
        try:
            if args.start_vllm:
                server = StartedServer()
                remote = OpenAILLM(server.base_url, os.environ.get("SERVED_NAME", "smollm2-135m"), server.api_key)
            else:
                remote = OpenAILLM(args.url, args.model, args.api_key)
            ok, detail = remote.health()
            if ok:
                print(f"vLLM backend at {remote.base_url} ...", file=sys.stderr)
                result = measure(remote, args.runs, args.max_tokens)
                if server is not None:
                    result.rss_mb = rss_mb(server.process.pid)
                    result.notes.append(f"server started by this run in {server.start_s:.0f} s")
                    result.notes.append("RSS = API server + engine-core processes")
                results.append(result)
            else:
                print(f"vLLM skipped: {detail} (run `make vllm` or pass --start-vllm)", file=sys.stderr)
        finally:
            if server is not None:
                server.stop()

    if args.json:
        print(json.dumps({"runs": args.runs, "max_tokens": args.max_tokens, "cpus": os.cpu_count(),
                          "load_average_1m": load_before, "results": [asdict(r) for r in results]}, indent=2))
    else:
        print(f"LLM backends, RAG-shaped prompt, greedy, max_tokens={args.max_tokens}, medians of {args.runs} runs "
              f"({os.cpu_count()} CPU cores; 1-min load average {load_before:.1f} at start, above 0 = other processes competed)")
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
