"""How chunks are produced and embedded: parsing ahead in a separate process, windows that span files, batches
sorted by length, each text tokenized once, and no torch on the way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ingest.loaders import Record
from ingest.parse import Parsed, ParseFailure, SplitConfig, parse_in_order
from ingest.pipeline import Ingestor
from ingest.report import Progress
from ingest.split import Splitter
from rag.index.embedder import Embedder, OnnxEmbedder, TorchEmbedder
from rag.index.records import StoreError
from rag.index.store import Store
from rag.settings import Settings
from tests.conftest import ROOT, XQUAD_DOCS
from tests.parsers import parse_or_die, slow_parse_reporting_pid
from tests.pdfs import make_pdf
from tests.test_ingest import CountingEmbedder


def _config(embedder: Embedder) -> SplitConfig:
    return SplitConfig(embedder.path, 254, 64, embedder.max_tokens)


def _mixed_folder(folder: Path) -> Path:
    folder.mkdir()
    make_pdf(folder / "a-atlas.pdf", ["The capital of Freedonia is Fredville.", "Its river is the Fredd."])
    (folder / "b-broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <</Type /Catalog>> garbage\n%%EOF\n")
    (folder / "c-notes.md").write_text("# Notes\n\nThe ferry leaves at seven.\n\n## Cats\n\nTom, Ada and Lin.\n")
    (folder / "d-sheet.xlsx").write_bytes(b"PK\x03\x04 not really")
    (folder / "e-plain.txt").write_text("The lighthouse was automated in 1989. " * 60)
    return folder


def test_parsing_ahead_in_a_process_gives_what_parsing_here_gives(tmp_path: Path, embedder: Embedder) -> None:
    paths = sorted(_mixed_folder(tmp_path / "docs").iterdir())
    here = list(parse_in_order(paths, _config(embedder), ahead=0))
    ahead = list(parse_in_order(paths, _config(embedder), ahead=2, min_seconds=0))
    assert [type(o) for o in here] == [Parsed, ParseFailure, Parsed, ParseFailure, Parsed]
    assert ahead == here, "same chunks, same failures, same order"
    assert "corrupt" in here[1].reason and "unsupported file type" in here[3].reason


def test_a_file_that_kills_the_parser_process_fails_alone(tmp_path: Path, embedder: Embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in ("a.txt", "crash-1.txt", "b.txt", "c.txt", "crash-2.txt", "d.txt"):
        (folder / name).write_text(f"This is the file called {name}.")
    paths = sorted(folder.iterdir())
    outcomes = list(parse_in_order(paths, _config(embedder), ahead=3, parse=parse_or_die, min_seconds=0))
    by_name = {p.name: o for p, o in zip(paths, outcomes, strict=True)}
    for name, outcome in by_name.items():
        if name.startswith("crash"):
            assert isinstance(outcome, ParseFailure) and outcome.kind == "ParserCrashed", name
        else:
            assert isinstance(outcome, Parsed) and name in outcome.chunks[0].text, name


def test_the_parser_process_starts_only_for_parsing_worth_its_start_up(tmp_path: Path, embedder: Embedder) -> None:
    """Files are read here while the reading left (seconds per file so far x files left) is under ``min_seconds``,
    then in a process of their own; a parser that takes 0.3 s a file and names its process shows where."""
    paths = [tmp_path / f"{i}.txt" for i in range(10)]
    here = str(os.getpid())

    def readers(min_seconds: float) -> list[str]:
        return [o.reason for o in parse_in_order(paths, _config(embedder), ahead=4, parse=slow_parse_reporting_pid,
                                                 min_seconds=min_seconds)]

    assert readers(1000) == [here] * 10, "too little to parse: no process"
    switched = readers(2.0)  # after one file: 0.3 s x 9 files left = 2.7 s, worth it
    assert switched[0] == here and len(set(switched[1:])) == 1 and switched[1] != here
    assert here not in readers(0)


def test_the_parser_process_leaves_when_ingest_is_killed(tmp_path: Path) -> None:
    """It holds the writing end of its own task queue, so without watching its parent it would wait forever."""
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text("x")
    program = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from ingest.parse import SplitConfig, parse_in_order\n"
        "from rag.index.embedder import model_dir\n"
        "from tests.parsers import slow_parse_reporting_pid\n"
        f"paths = sorted(Path({str(tmp_path)!r}).iterdir())\n"
        "outcomes = parse_in_order(paths, SplitConfig(model_dir(), 254, 64, 254), ahead=2, min_seconds=0,\n"
        "                          parse=slow_parse_reporting_pid)\n"
        "print(next(outcomes).reason, flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        worker = int(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    deadline = time.monotonic() + 30
    while Path(f"/proc/{worker}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(f"/proc/{worker}").exists(), "the parser process outlived the ingest that started it"


def test_each_text_is_tokenized_once_while_splitting(embedder: Embedder) -> None:
    counted: list[str] = []

    def count(text: str) -> int:
        counted.append(text)
        return embedder.count_tokens(text)

    splitter = Splitter(count, chunk_tokens=64, overlap=16, max_tokens=embedder.max_tokens)
    text = (XQUAD_DOCS / sorted(p.name for p in XQUAD_DOCS.iterdir())[0]).read_text()
    chunks = splitter.split([Record(text=text)])
    assert len(chunks) > 5
    assert len(counted) == len(set(counted)), "no text was tokenized twice"
    assert all(c.n_tokens == embedder.count_tokens(c.text) for c in chunks)


def test_batches_span_files_sorted_by_length_and_repeated_texts_embed_once(
    tmp_path: Path, store: Store, embedder: Embedder
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    shared = ("Every file ends with this same closing paragraph about the harbour, its old lighthouse, its ferry that "
              "leaves at seven, and the three cats named Tom, Ada and Lin who live there, all year round.")  # 41 tokens
    for i in range(6):
        long = " ".join(f"Sentence {j} of file {i} describes shipment {i * 100 + j} in detail." for j in range(4 * i + 1))
        (folder / f"f{i}.txt").write_text(f"{long}\n\n{shared}")
    counting = CountingEmbedder(embedder)
    events: list[Progress] = []
    settings = Settings(embed_batch_size=4, embed_window=1000, chunk_tokens=48, chunk_overlap=0)
    report = Ingestor(store, settings=settings, embedder=counting, on_progress=events.append).ingest([folder])

    assert len(report.added) == 6 and not report.failed
    lengths = [[embedder.count_tokens(t) for t in batch] for batch in counting.batches]
    flat = [n for batch in lengths for n in batch]
    assert flat == sorted(flat), "batches are cut from the window sorted by length"
    assert all(len(batch) == 4 for batch in counting.batches[:-1])
    texts = [t for batch in counting.batches for t in batch]
    assert sum(shared in t for t in texts) == 1, "a text in six files is embedded once"
    assert len(texts) < report.chunks
    files_per_batch = [len({t.split(" of file ")[1].split()[0] for t in batch if " of file " in t})
                       for batch in counting.batches]
    assert max(files_per_batch) > 1, "a batch holds chunks of several files"
    done = [e for e in events if e.stage == "done"]
    assert sorted(e.path.name for e in done) == [f"f{i}.txt" for i in range(6)]
    for event in done:  # each file's embedding progress ends at its own chunk count
        last = [e for e in events if e.path == event.path and e.stage == "embedding"][-1]
        assert last.chunks_done == last.chunks_total == event.chunks_total


def test_windowed_ingest_stores_what_file_by_file_ingest_stores(tmp_path: Path, embedder: Embedder) -> None:
    docs = _mixed_folder(tmp_path / "docs")
    rows = []
    for name, settings in (("one", Settings(embed_window=1, parse_ahead=False)),
                           ("many", Settings(embed_window=500, parse_ahead=True))):
        store = Store(tmp_path / name, embed_model=embedder.name, dim=embedder.dim)
        report = Ingestor(store, settings=settings, embedder=embedder).ingest([docs])
        assert sorted(report.added) == ["a-atlas.pdf", "c-notes.md", "e-plain.txt"]
        assert sorted(Path(f.path).name for f in report.failed) == ["b-broken.pdf", "d-sheet.xlsx"]
        rows.append(store._db.execute(
            "SELECT d.name, c.ordinal, c.page, c.section, c.text, c.embedding FROM chunks c"
            " JOIN documents d ON d.id = c.doc_id ORDER BY d.name, c.ordinal").fetchall())
        store.close()
    assert [r[:5] for r in rows[0]] == [r[:5] for r in rows[1]]
    for a, b in zip(rows[0], rows[1], strict=True):
        assert np.allclose(np.frombuffer(a[5], np.float32), np.frombuffer(b[5], np.float32), atol=1e-6)


def test_onnx_float32_equals_pytorch_and_int8_is_a_different_model(embedder: Embedder) -> None:
    texts = ["How many points did the Panthers defense surrender?", "x",
             (XQUAD_DOCS / sorted(p.name for p in XQUAD_DOCS.iterdir())[1]).read_text()[:3000]]  # over 256 tokens
    torch_vectors = TorchEmbedder().embed(texts)
    float32, int8 = OnnxEmbedder(), OnnxEmbedder(int8=True)
    assert np.allclose(float32.embed(texts), torch_vectors, atol=1e-5)
    assert float32.name == TorchEmbedder.name == "all-MiniLM-L6-v2"
    cosine = (int8.embed(texts) * torch_vectors).sum(axis=1)
    assert (cosine > 0.97).all() and (cosine < 0.99999).any(), cosine
    assert int8.name == "all-MiniLM-L6-v2-int8" != float32.name
    assert np.array_equal(int8.embed_query(texts[0]), int8.embed(texts)[0]), "a text's vector ignores its batch"


def test_a_session_per_core_gives_each_text_the_vector_one_session_gives_it() -> None:
    """Texts dealt out to one single-thread session per core (rag.index.onnx_encoder): each text's vector is the one
    a single session makes for it alone, bit for bit, in the texts' order, whatever their lengths."""
    words = " ".join(p.read_text() for p in sorted(XQUAD_DOCS.iterdir())[:3]).split()
    texts = [" ".join(words[i : i + n]) for i, n in zip(range(0, 40_000, 400), [1, 40, 400, 8, 180, 300, 3] * 14)]
    one, three = OnnxEmbedder(int8=True, threads=1), OnnxEmbedder(int8=True, threads=3)
    assert len(one.encoder().sessions) == 1 and len(three.encoder().sessions) == 3
    alone = np.vstack([one.embed_query(t) for t in texts])
    assert np.array_equal(three.embed(texts, batch_size=32), alone)
    assert np.array_equal(three.embed(texts[:1]), alone[:1]) and np.array_equal(one.embed(texts), alone)


def test_an_index_refuses_vectors_of_another_variant(tmp_path: Path) -> None:
    int8, float32 = OnnxEmbedder(int8=True), OnnxEmbedder()
    Store(tmp_path, embed_model=int8.name, dim=int8.dim).close()
    with pytest.raises(StoreError, match="all-MiniLM-L6-v2-int8"):
        Store(tmp_path, embed_model=float32.name, dim=float32.dim)


@pytest.mark.parametrize("backend", ["onnx-int8", "onnx"])
def test_ingest_and_search_never_import_torch(tmp_path: Path, backend: str, embedder: Embedder) -> None:
    """Start-up counts: importing torch alone takes seconds. (The ONNX files exist: the session fixture made
    them; making them is the one step that needs torch, once per machine.)"""
    OnnxEmbedder(int8=backend == "onnx-int8").load()
    docs = _mixed_folder(tmp_path / "docs")
    program = (
        "import json, sys\n"
        "from ingest.__main__ import main as ingest\n"
        "from rag.search import main as search\n"
        f"ingest([{str(docs)!r}, '--index', {str(tmp_path / 'index')!r}])\n"
        f"search(['Freedonia', '--index', {str(tmp_path / 'index')!r}])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sentence_transformers'))))\n"
    )
    env = {"PYTHONPATH": str(ROOT), "RAG_EMBED_BACKEND": backend, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    assert "Fredville" in result.stdout


def test_the_parser_process_starts_under_streamlit_without_running_the_app(tmp_path: Path, embedder: Embedder) -> None:
    """Streamlit (and AppTest) make the page script ``__main__``; a spawned interpreter re-imports ``__main__``, so
    the parser process would run app.py. Here ``__main__`` is a script that fails if imported again."""
    import sys
    import types

    trap = tmp_path / "page.py"
    trap.write_text("raise SystemExit('the page script ran in the parser process')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(trap)
    real = sys.modules["__main__"]
    sys.modules["__main__"] = page
    try:
        paths = [tmp_path / f"{i}.txt" for i in range(3)]
        for path in paths:
            path.write_text(f"File {path.name} holds a line of text.")
        outcomes = list(parse_in_order(paths, _config(embedder), ahead=2, parse=slow_parse_reporting_pid,
                                       min_seconds=0))
    finally:
        sys.modules["__main__"] = real
    assert {o.reason for o in outcomes} != {str(os.getpid())}, "the files were read in a parser process"
