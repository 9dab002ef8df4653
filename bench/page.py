"""The page's own cost: time to the first word of an answer in a real browser, beside the same question asked
in-process.

    python bench/page.py                        # the default model, 3 timed rounds of the sample questions
    python bench/page.py --rounds 1 --model smollm2-135m --json

Both sides answer the sample questions (data/sample/questions.json) from one scratch index of data/sample with the
same settings and model:
- **in-process**: ``Service.ask`` in this process, from the call to the first answer text that is not blank (as
  ``bench/api.py`` measures it);
- **page**: ``streamlit run app.py`` on loopback (as ``make run`` serves it) driven by Debian's Chromium through
  Playwright. Each question goes into a new conversation (no history, as in-process), is typed in the chat box,
  and is timed in the browser's own clock from the Enter key to the first word of the answer's text on screen
  (a MutationObserver), so the figure is what a reader waits for: the script's run, the conversation saved, the
  status line, retrieval, the model's first token, the websocket and the drawing.

The paired-turn method of ``bench/api.py``: each question is asked once on each side untimed, so each side's model
holds its prompt in its cache (llama.cpp keeps the last prompt's KV: the time to the first token is then retrieval
plus one step of the model, small and steady), then the two sides take turns ``--rounds`` times. The difference of
each pair is what the page adds; its median is the headline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.llm import get_llm  # noqa: E402
from rag.service import Service  # noqa: E402
from rag.settings import Settings  # noqa: E402

CONFIGURED_MODEL = Settings().embedded_model  # read before the tests' settings make the small model the default

from bench.api import QUESTIONS, SAMPLE, Timing, ask_in_process, percentile  # noqa: E402
from tests.fixtures_browser import CHROMIUM, serve_app, settled  # noqa: E402 - the app as the tests start it

# In the page: the time of the Enter key in the chat box, and of the first word of the newest answer's text (not
# its status line, captions or sources).
WATCH = """() => {
    window.benchAsked = null; window.benchFirst = null;
    const box = document.querySelector('[data-testid="stChatInputTextArea"]');
    box.addEventListener('keydown', e => { if (e.key === 'Enter') window.benchAsked = performance.now(); },
                         {capture: true, once: true});
    const words = () => {
        const messages = document.querySelectorAll('[data-testid="stChatMessage"]');
        const last = messages[messages.length - 1];
        if (!last || !last.querySelector('[data-testid="stChatMessageAvatarAssistant"]')) return false;
        return [...last.querySelectorAll('[data-testid="stMarkdownContainer"]')].some(md =>
            !md.closest('[data-testid="stExpander"], [data-testid="stCaptionContainer"], [data-testid="stAlert"]')
            && md.innerText.trim() !== '');
    };
    const observer = new MutationObserver(() => {
        if (window.benchAsked !== null && window.benchFirst === null && words()) {
            window.benchFirst = performance.now();
            observer.disconnect();
        }
    });
    observer.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


@dataclass
class Pair:
    question: str
    in_process: Timing
    page: Timing

    @property
    def added_s(self) -> float:
        return self.page.first_s - self.in_process.first_s


class Browser:
    """Chromium on the served page; ``ask`` times one question in a new conversation."""

    def __init__(self, url: str) -> None:
        from playwright.sync_api import sync_playwright

        self.url = url
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.set_default_timeout(600_000)

    def ask(self, question: str) -> Timing:
        page = self.page
        page.goto(self.url)  # no conversation in the address: a new, empty one
        page.get_by_role("button", name="New conversation").wait_for()
        settled(page)
        page.evaluate(WATCH)
        box = page.locator('[data-testid="stChatInputTextArea"]')
        box.fill(question)
        box.press("Enter")
        reply = page.locator('[data-testid="stChatMessage"]').last
        reply.locator("summary").get_by_text("Answered in ").wait_for()
        last = page.evaluate("performance.now()")
        asked, first = page.evaluate("[window.benchAsked, window.benchFirst]")
        if asked is None or first is None:
            raise RuntimeError(f"no answer text seen for {question!r}")
        return Timing((first - asked) / 1000, (last - asked) / 1000)

    def close(self) -> None:
        self.browser.close()
        self.playwright.stop()


def run(args: argparse.Namespace, work: Path) -> tuple[list[Pair], Settings]:
    env = {"RAG_INDEX_DIR": str(work / "index"), "RAG_LLM": "embedded",
           "RAG_EMBEDDED_MODEL": args.model or CONFIGURED_MODEL}
    settings = Settings(**{k[4:].lower(): v for k, v in env.items()})
    service = Service.open(settings)
    report = service.add([SAMPLE])
    print(f"indexed {len(report.added)} sample files", file=sys.stderr)
    llm = get_llm(settings)  # loaded once, as the page keeps its own
    pairs: list[Pair] = []
    with serve_app(work, **env) as url:
        browser = Browser(url)
        try:
            for question in QUESTIONS:
                ask_in_process(service, llm, question)  # untimed: each side's model caches this prompt
                browser.ask(question)
                for _ in range(args.rounds):
                    pairs.append(Pair(question, ask_in_process(service, llm, question), browser.ask(question)))
                    print(f"  {pairs[-1].in_process.first_s:.3f} s in-process, {pairs[-1].page.first_s:.3f} s "
                          f"page: {question}", file=sys.stderr)
        finally:
            browser.close()
    service.close()
    return pairs, settings


def table(pairs: list[Pair], model: str) -> str:
    lines = ["| side | asks | first word p50 / p95 (s) | whole answer p50 / p95 (s) |", "|---|---|---|---|"]
    for side in ("in_process", "page"):
        timings = [getattr(p, side) for p in pairs]
        firsts, lasts = [t.first_s for t in timings], [t.last_s for t in timings]
        name = "in-process (`Service.ask`)" if side == "in_process" else "page (Chromium, Enter to first word)"
        lines.append(f"| {model}, {name} | {len(timings)} | {percentile(firsts, 0.5):.3f} / "
                     f"{percentile(firsts, 0.95):.3f} | {percentile(lasts, 0.5):.2f} / {percentile(lasts, 0.95):.2f} |")
    added = [p.added_s for p in pairs]
    lines += ["", f"What the page adds to the first word: median {1000 * statistics.median(added):+.0f} ms, "
                  f"p95 {1000 * percentile(added, 0.95):+.0f} ms (paired, {len(added)} asks)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed asks per question and side (default 3)")
    parser.add_argument("--model", default=None, help="the embedded model (default: the settings')")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        parser.error(f"{CHROMIUM} is missing: apt-get install chromium")
    work = Path(tempfile.mkdtemp(prefix="bench-page-"))
    load_before = os.getloadavg()
    try:
        pairs, settings = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    if args.json:
        print(json.dumps({"model": settings.embedded_model, "pairs": [asdict(p) | {"added_s": p.added_s}
                                                                     for p in pairs],
                          "load": [load_before, load_after]}, indent=2))
    else:
        print(table(pairs, settings.embedded_model))
        print(f"\nload average (1, 5, 15 min) {', '.join(f'{x:.1f}' for x in load_before)} before, "
              f"{', '.join(f'{x:.1f}' for x in load_after)} after; {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
