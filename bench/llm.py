"""Benchmark the LLM backends side by side: time to first token, decode tokens/s, end-to-end answer latency.

    python bench/llm.py                       # embedded (default model) always; vLLM too if RAG_LLM_URL answers
    python bench/llm.py --baseline-llama DIR  # also the same model on another llama-cpp-python build (DIR on PYTHONPATH)
    python bench/llm.py --start-vllm          # start scripts/vllm.sh on a free port for the run, stop it after
    python bench/llm.py --runs 5 --max-tokens 128 --model smollm2-135m --json
    python bench/llm.py --passages 2          # a prompt of about 600 tokens in all (the issue's target size)

The prompt is the app's own answer prompt: its fixed head (rules and worked examples, rag/prompts/) and then about
600 tokens of passages and a question, answered greedily. Each timed request has new passages, so the passages are
always evaluated anew; two ways for the head:
- "cold": a request number opens the system prompt, so nothing is reused and the whole prompt is evaluated
  (what the first question after a start costs);
- "prefix reused": the head is byte-identical, as in the app, so llama.cpp keeps its KV cache and evaluates only
  the passages and the question (what every later question costs).
One warm-up request per backend is not timed (it includes the model's load, reported on its own). Figures are
medians over ``--runs``. With ``--baseline-llama DIR`` (e.g. the portable AVX2-only wheel unpacked with
``pip install --no-deps --target DIR llama_cpp_python-….whl``) the same measurement runs in a child process on that
build, in the same run, so both builds meet the same machine load.
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
from rag.llm.embedded import load_cpu_backends  # noqa: E402
from rag.llm.models import DEFAULT_EMBEDDED_MODEL, EMBEDDED_MODELS  # noqa: E402
from rag.prompts import load, load_turns  # noqa: E402
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
    "Notre-Dame de Paris is a medieval Catholic cathedral on the Ile de la Cite. Its construction began in 1163 "
    "under Bishop Maurice de Sully and was largely complete by 1260. A fire in April 2019 destroyed its spire and "
    "most of its roof; the cathedral reopened in December 2024 after five years of restoration.",
    "The Arc de Triomphe stands at the western end of the Champs-Elysees. Napoleon ordered it in 1806 after his "
    "victory at Austerlitz, and it was inaugurated in 1836. Beneath it lies the Tomb of the Unknown Soldier from "
    "the First World War, whose flame has been rekindled every evening since 1923.",
]
QUESTION = "Who designed the Eiffel Tower, and when was it built?"
PASSAGES_USED = [len(PASSAGES)]  # --passages K: a shorter prompt (2 of them make a prompt of about 600 tokens)


def rag_messages(request_id: int = 0, *, reuse_head: bool = False) -> list[dict[str, str]]:
    """The app's answer prompt with this benchmark's passages. ``request_id`` makes every request's passages new
    (both backends cache the KV of a repeated prompt: llama.cpp its last prompt, vLLM by prefix caching); it opens
    the system prompt too unless ``reuse_head``, so a cold request shares no prefix with the one before."""
    order = (PASSAGES[request_id % len(PASSAGES):] + PASSAGES[: request_id % len(PASSAGES)])[:PASSAGES_USED[0]]
    passages = "\n\n".join(f"[{i}] (paris-{i}.md)\n<<<\n{text}\n>>>" for i, text in enumerate(order, start=1))
    user = load("answer_user").format(passages=passages, question=QUESTION)  # laid out as rag.answer.context does
    system = load("answer_system")
    head = [{"role": role, "content": text} for role, text in load_turns("answer_examples")]
    if reuse_head:
        user = f"Request {request_id}.\n{user}"
    else:
        system = f"Request {request_id}. {system}"
    return [{"role": "system", "content": system}, *head, {"role": "user", "content": user}]


@dataclass
class Result:
    backend: str
    model: str
    label: str = ""
    runs: int = 0
    load_s: float | None = None
    ttft_ms: float = 0.0
    tokens_per_s: float = 0.0
    e2e_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: float = 0.0
    rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)


def measure(llm: LLM, runs: int, max_tokens: int, *, reuse_head: bool, label: str) -> Result:
    """One untimed warm-up, then ``runs`` timed greedy answers; medians."""
    result = Result(llm.backend, llm.model, label, runs)
    started = time.perf_counter()
    llm.complete(rag_messages(0, reuse_head=reuse_head), max_tokens=8, temperature=0.0)
    result.load_s = time.perf_counter() - started
    ttfts, rates, totals, completions = [], [], [], []
    for run in range(1, runs + 1):
        messages = rag_messages(run * 7919 + int(time.time()) % 100_000, reuse_head=reuse_head)
        started = time.perf_counter()
        first: float | None = None
        generation = llm.stream(messages, max_tokens=max_tokens, temperature=0.0)
        for _delta in generation:
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        usage = generation.usage
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
        ("", lambda r: r.label),
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
            print(f"note ({r.label or r.backend}): {note}")


def cpu_features() -> str:
    """The instruction sets the loaded llama.cpp CPU backend uses, from its system info ("AVX2 AVX512 ...")."""
    info = load_cpu_backends()
    flags = [part.split("=")[0].strip() for part in info.split("|") if part.strip().endswith("= 1")]
    return " ".join(f for f in flags if f.startswith(("AVX", "AMX", "FMA", "F16C", "BMI"))) or info.strip()


def measure_embedded(model: str, threads: int, runs: int, max_tokens: int, build: str) -> list[Result]:
    """The embedded model on the llama-cpp-python this interpreter imports: cold, then with the head reused."""
    before = self_rss_mb()
    llm = EmbeddedLLM(model_name=model, n_threads=threads)
    cold = measure(llm, runs, max_tokens, reuse_head=False, label=f"{build}, cold")
    cold.rss_mb = self_rss_mb() - before
    warm = measure(llm, runs, max_tokens, reuse_head=True, label=f"{build}, prefix reused")
    features = cpu_features()
    import llama_cpp

    for result in (cold, warm):
        result.notes.append(f"llama-cpp-python {llama_cpp.__version__} from {Path(llama_cpp.__file__).parent}; "
                            f"CPU backend uses: {features}; {threads} threads")
    return [cold, warm]


def measure_in_child(llama_dir: Path, args: argparse.Namespace) -> list[Result]:
    """The same embedded measurement in a child process whose ``llama_cpp`` comes from ``llama_dir``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(llama_dir), str(ROOT)])}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--no-vllm", "--json", "--runs",
               str(args.runs), "--max-tokens", str(args.max_tokens), "--threads", str(args.threads), "--model",
               args.model, "--build-label", "baseline build", "--passages", str(PASSAGES_USED[0])]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the baseline build failed:\n{done.stderr[-3000:]}")
    return [Result(**{k: v for k, v in r.items()}) for r in json.loads(done.stdout)["results"]]


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model", default=DEFAULT_EMBEDDED_MODEL, choices=list(EMBEDDED_MODELS),
                        help="embedded model")
    parser.add_argument("--baseline-llama", type=Path, metavar="DIR",
                        help="also measure the embedded model with the llama_cpp package found in DIR")
    parser.add_argument("--url", default=settings.llm_url, help="vLLM base URL (default RAG_LLM_URL)")
    parser.add_argument("--vllm-model", default=settings.llm_model, help="the served model name")
    parser.add_argument("--start-vllm", action="store_true", help="start scripts/vllm.sh for this run")
    parser.add_argument("--no-vllm", action="store_true", help="embedded backend only")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads for the embedded backend")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build-label", default="this build", help=argparse.SUPPRESS)
    parser.add_argument("--passages", type=int, default=len(PASSAGES), choices=range(1, len(PASSAGES) + 1),
                        metavar="K", help=f"passages in the prompt (1 to {len(PASSAGES)}, default all)")
    args = parser.parse_args(argv)
    PASSAGES_USED[0] = args.passages

    load_before = os.getloadavg()[0]
    print(f"embedded backend ({args.build_label}) ...", file=sys.stderr)
    results = measure_embedded(args.model, args.threads, args.runs, args.max_tokens, args.build_label)
    results[0].notes.append("RSS = growth of this process from loading the model")
    if args.baseline_llama:
        print(f"embedded backend on the baseline build in {args.baseline_llama} ...", file=sys.stderr)
        results += measure_in_child(args.baseline_llama, args)
    server: StartedServer | None = None
    if not args.no_vllm:
        try:
            if args.start_vllm:
                server = StartedServer()
                remote = OpenAILLM(server.base_url, os.environ.get("SERVED_NAME", "smollm2-135m"), server.api_key)
            else:
                remote = OpenAILLM(args.url, args.vllm_model, settings.llm_api_key)  # the key: RAG_LLM_API_KEY only
            ok, detail = remote.health()
            if ok:
                print(f"vLLM backend at {remote.base_url} ...", file=sys.stderr)
                result = measure(remote, args.runs, args.max_tokens, reuse_head=False, label="vLLM, cold")
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
        print(f"LLM backends, the app's answer prompt, greedy, max_tokens={args.max_tokens}, medians of {args.runs} runs "
              f"({os.cpu_count()} CPU cores; 1-min load average {load_before:.1f} at start, above 0 = other processes competed)")
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
