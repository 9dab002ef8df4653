"""Fuzzing every loader with seeded mutations of real files: any outcome but "loaded" or "LoadError with a
reason" is a bug (a stray exception type, an empty reason, a hang, records that are not text).

The seeds are real files written by the tests (a multi-page PDF with fpdf2, text in several encodings, Markdown
with headings and fences, Word and PowerPoint files with python-docx/python-pptx, a web page). Each case mutates
one seed with a seeded random generator (bit flips, truncation, inserted/deleted/duplicated slices, format-aware
tokens), so a failure names its seed and can be replayed:
``FUZZ_ONLY=<suffix>:<case>``. The fast subset (``make test-fast``) runs FAST_CASES cases per format; the full
campaign (``make test``) runs FULL_CASES per format, marked slow.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingest.loaders import SUPPORTED_SUFFIXES, LoadError, load_document
from tests.documents import make_docx, make_html, make_pptx
from tests.pdfs import make_pdf

FAST_CASES = 60
FULL_CASES = 2500
CASE_SECONDS = 20  # a loader that takes longer on one small file is hanging

TOKENS: dict[str, list[bytes]] = {
    ".pdf": [b"obj", b"endobj", b"stream", b"endstream", b"/Length 99999999", b"<<", b">>", b"[", b"]", b"xref",
             b"trailer", b"%%EOF", b"/Type /Page", b"/Kids [", b"-1", b"9999999999", b"/Filter /FlateDecode", b"R"],
    ".txt": [b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf", b"\x00", b"\xc3", b"\xe2\x80\xa8", b"\r", b"\x85", b"-\n"],
    ".md": [b"# ", b"```", b"~~~", b"\n\n", b"[x](", b"\xe2\x80\xa9", b"\x00", b"    ", b"#" * 7],
    # Word and PowerPoint files are zip packages of XML parts
    ".docx": [b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"\xff\xff\xff\xff", b"\x00\x00",
              b"\xd0\xcf\x11\xe0"],
    ".html": [b"<script>", b"</", b"<table><tr><td>", b"<!--", b"&#x", b"<h1>", b"<meta charset=\"", b"\x00",
              b"<![CDATA["],
}
TOKENS[".pptx"] = TOKENS[".docx"]
TOKENS[".htm"] = TOKENS[".html"]


def _seed_pdf(folder: Path) -> bytes:
    pages = [f"Page {n}. The harbour of Elling handled {n * 1000} tonnes of cargo in 18{n}9." for n in range(1, 4)]
    return make_pdf(folder / "seed.pdf", pages).read_bytes()


def _seed_txt(_: Path) -> bytes:
    return ("Caf\u00e9 notes \u2014 the ferry leaves at seven.\nSecond line, with a hy-\nphenated word.\n" * 5
            ).encode("utf-8")


def _seed_md(_: Path) -> bytes:
    return ("# Title\n\nIntro text.\n\n## Section\n\nBody with *emphasis*.\n\n```\n# not a heading\n```\n\n"
            "### Deep\n\nMore text.\n").encode("utf-8")


def _seed_docx(folder: Path) -> bytes:
    return make_docx(folder / "seed.docx", [
        ("heading1", "Harbour"), ("p", "The harbour of Elling handled cargo."), ("heading2", "Cranes"),
        ("table", [["Crane", "Tonnes"], ["North", "40"], ["South", "25"]]), ("p", "Built in 1889."),
    ], title="Elling").read_bytes()


def _seed_pptx(folder: Path) -> bytes:
    return make_pptx(folder / "seed.pptx", [
        {"title": "Harbour", "body": "The harbour of Elling.", "notes": "Speak slowly."},
        {"title": "Cranes", "body": "Two cranes.", "table": "North|40"},
    ]).read_bytes()


def _seed_html(folder: Path) -> bytes:
    return make_html(folder / "seed.html", "Elling", (
        "<h1>The harbour</h1><p>The harbour of Elling handled a great deal of cargo in 1889, most of it timber "
        "and fish.</p><h2>Cranes</h2><table><tr><th>Crane</th><th>Tonnes</th></tr><tr><td>North</td><td>40</td>"
        "</tr></table><p>The north crane was the largest on the coast.</p>")).read_bytes()


SEEDS: dict[str, Callable[[Path], bytes]] = {".pdf": _seed_pdf, ".txt": _seed_txt, ".md": _seed_md,
                                             ".markdown": _seed_md, ".docx": _seed_docx, ".pptx": _seed_pptx,
                                             ".html": _seed_html, ".htm": _seed_html}


def mutate(data: bytes, rng: random.Random, tokens: list[bytes]) -> bytes:
    """One to four random edits of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        # Mostly inside the body: a PDF whose header or end-of-file marker is hit is refused before any parsing.
        inner = len(out) > 256 and rng.random() < 0.8
        at = rng.randrange(64, len(out) - 64) if inner else rng.randrange(len(out) + 1)
        if kind == 0 and out:  # flip bits near ``at``
            for _ in range(rng.randint(1, 8)):
                i = min(len(out) - 1, at + rng.randrange(64))
                out[i] ^= 1 << rng.randrange(8)
        elif kind == 1:  # truncate
            del out[at:]
        elif kind == 2:  # insert random bytes
            out[at:at] = rng.randbytes(rng.randint(1, 64))
        elif kind == 3:  # delete a slice
            del out[at : at + rng.randint(1, 256)]
        elif kind == 4 and out:  # duplicate a slice elsewhere
            start = rng.randrange(len(out))
            piece = out[start : start + rng.randint(1, 512)]
            out[at:at] = piece
        elif kind == 5:  # a token of the format
            out[at:at] = rng.choice(tokens)
        else:  # overwrite a digit run: lengths, offsets and object numbers in PDFs
            digits = [i for i, b in enumerate(out) if 48 <= b <= 57]
            if digits:
                i = rng.choice(digits)
                out[i : i + 1] = str(rng.choice([0, 1, 7, 255, 65535, 2**31, 10**12])).encode()
    return bytes(out)


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"the loader ran for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_campaign(suffix: str, cases: int, folder: Path) -> dict[str, int]:
    """Load ``cases`` mutants of the seed; return how many loaded and how many failed with a reason."""
    seed = SEEDS[suffix](folder)
    tokens = TOKENS.get(suffix, TOKENS[".md"])
    only = os.environ.get("FUZZ_ONLY", "")
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(cases):
        if only and only != f"{suffix}:{case}":
            continue
        rng = random.Random(f"{suffix}:{case}")
        path = folder / f"case-{case}{suffix}"
        path.write_bytes(mutate(seed, rng, tokens))
        where = f"{suffix}:{case} (replay with FUZZ_ONLY={suffix}:{case})"
        try:
            with deadline(CASE_SECONDS):
                document = load_document(path)
        except LoadError as exc:
            assert str(exc).strip(), f"{where}: LoadError without a reason"
            outcomes["refused"] += 1
        except Exception as exc:  # noqa: BLE001 - exactly what the campaign looks for
            pytest.fail(f"{where}: {type(exc).__name__}: {exc}")
        else:
            assert document.records, f"{where}: loaded with no records (should be a LoadError)"
            for record in document.records:
                assert isinstance(record.text, str) and record.text.strip(), f"{where}: an empty record"
                assert record.page is None or 1 <= record.page <= (document.pages or 0), f"{where}: bad page"
            outcomes["loaded"] += 1
        path.unlink()
    return outcomes


def test_every_supported_type_has_a_seed() -> None:
    assert set(SUPPORTED_SUFFIXES) <= set(SEEDS), "a new loader needs a seed file here"


@pytest.mark.parametrize("suffix", sorted(SEEDS))
def test_fuzz_fast_subset(suffix: str, tmp_path: Path) -> None:
    outcomes = run_campaign(suffix, FAST_CASES, tmp_path)
    assert sum(outcomes.values()) == (FAST_CASES if not os.environ.get("FUZZ_ONLY") else sum(outcomes.values()))


# .htm and .markdown are other names of the .html and .md loaders (same seed file, same code): the fast subset checks
# that they reach those loaders; the full campaign spends its time once per loader.
ALIASES = {".htm", ".markdown"}


@pytest.mark.slow
@pytest.mark.parametrize("suffix", sorted(set(SEEDS) - ALIASES))
def test_fuzz_full_campaign(suffix: str, tmp_path: Path) -> None:
    outcomes = run_campaign(suffix, FULL_CASES, tmp_path)
    print(f"{suffix}: {outcomes}")  # noqa: T201 - the counts go into docs/reliability.md
    if not os.environ.get("FUZZ_ONLY"):
        assert sum(outcomes.values()) == FULL_CASES
