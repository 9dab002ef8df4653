"""Hybrid retrieval: fusion maths, BM25 kept in step with the store, and the "no evidence" signal on a real index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import Ingestor
from rag.index.embedder import Embedder
from rag.index.keyword import tokenize
from rag.index.records import indexed_text
from rag.index.store import Store
from rag.retrieval.fusion import convex, reciprocal_rank
from rag.retrieval.retriever import Retriever
from rag.settings import Settings
from tests.stores import StoreFactory, chunk_ids, stored_chunks


def test_tokenize_stems_and_drops_stop_words() -> None:
    assert tokenize("When did the Normans conquer England?") == ["norman", "conquer", "england"]


def test_reciprocal_rank_rewards_agreement() -> None:
    dense = [(1, 0.9), (2, 0.8), (3, 0.7)]
    sparse = [(3, 12.0), (4, 9.0), (1, 3.0)]
    fused = reciprocal_rank([dense, sparse], [1.0, 1.0], k=60)
    assert [i for i, _ in fused][:2] == [1, 3]  # in both lists beats first in one
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)
    only_dense = reciprocal_rank([dense, sparse], [1.0, 0.0], k=60)
    assert [i for i, _ in only_dense][:3] == [1, 2, 3]


def test_convex_fusion_scales_each_list() -> None:
    dense = [(1, 0.50), (2, 0.45)]
    sparse = [(2, 20.0), (3, 10.0)]
    fused = dict(convex(dense, sparse, alpha=0.5))
    assert fused[2] == pytest.approx(0.5 * 0.45 + 0.5 * 1.0)
    assert fused[1] == pytest.approx(0.25) and fused[3] == pytest.approx(0.25)
    assert dict(convex(dense, [], alpha=0.5))[1] == pytest.approx(0.25), "no keyword hits: dense alone"


def test_keyword_scores_are_lucene_bm25_over_the_stored_stems(tmp_path: Path, store: Store, embedder: Embedder) -> None:
    """FTS5 picks the candidates; the scores are BM25 as bm25s computed them (the fusion was tuned on those)."""
    import bm25s

    docs = _docs(tmp_path / "docs")
    Ingestor(store, embedder=embedder).ingest([docs])
    rows = [(i, text, context) for i, _, text, context in stored_chunks(store)]
    reference = bm25s.BM25()  # k1 = 1.5, b = 0.75, Lucene's IDF
    reference.index([tokenize(indexed_text(text, context)) for _, text, context in rows], show_progress=False)
    for query in ("Zephyrine tea ships London", "bees dance", "bridges Glacier Express crew"):
        expected = reference.get_scores(tokenize(query))
        found = dict(store.search_sparse(query, 10))
        assert found, query
        assert found == pytest.approx({rows[i][0]: float(v) for i, v in enumerate(expected) if v > 0}, rel=1e-5)
    assert store.idf(["zebra"])[0] > store.idf(["bee"])[0] > 0


def _docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ships.md").write_text(
        "# Ships\n\nThe clipper Zephyrine carried tea from Foochow to London in 1869.\n\n"
        "## Crew\n\nCaptain Ilsabet Marr commanded a crew of thirty-one sailors.\n"
    )
    (folder / "bees.txt").write_text("Honey bees communicate the direction of flowers with a waggle dance.\n")
    (folder / "trains.txt").write_text("The Glacier Express crosses 291 bridges between Zermatt and St. Moritz.\n")
    return folder


def test_bm25_stays_in_step_after_update_and_removal(tmp_path: Path, store: Store, embedder: Embedder,
                                                     store_factory: StoreFactory) -> None:
    docs = _docs(tmp_path / "docs")
    ingestor = Ingestor(store, embedder=embedder)
    ingestor.ingest([docs])
    assert store.search_sparse("waggle dance", 3)[0][0] in _ids(store, "bees.txt")

    (docs / "bees.txt").write_text("Bumblebees nest underground in abandoned burrows.\n")
    ingestor.ingest([docs])
    assert store.search_sparse("waggle dance", 3) == [], "the old text is gone from BM25"
    assert store.search_sparse("bumblebees burrows", 3)[0][0] in _ids(store, "bees.txt")

    ingestor.remove(["trains.txt"])
    assert store.search_sparse("Glacier Express bridges", 3) == []
    reopened = store_factory(store.dir, embed_model=embedder.name, dim=embedder.dim)
    assert reopened.search_sparse("Glacier Express bridges", 3) == []
    assert reopened.search_sparse("bumblebees", 3)[0][0] in _ids(store, "bees.txt")


def _ids(store: Store, name: str) -> set[int]:
    return chunk_ids(store, name)


def test_hybrid_finds_a_rare_name_that_dense_search_misses_less_well(
    tmp_path: Path, store: Store, embedder: Embedder
) -> None:
    Ingestor(store, embedder=embedder).ingest([_docs(tmp_path / "docs")])
    hits = Retriever(store, embedder=embedder, settings=Settings()).search("Who was Ilsabet Marr?", 2)
    assert hits[0].chunk.source == "ships.md" and "Marr" in hits[0].chunk.text
    assert hits[0].sparse is not None and hits[0].dense is not None
    assert hits[0].chunk.section == "Crew"


def test_a_passage_held_by_two_files_is_returned_once(tmp_path: Path, store: Store, embedder: Embedder) -> None:
    docs = _docs(tmp_path / "docs")
    for copy in ("bees copy.txt", "bees copy 2.txt", "bees copy 3.txt"):  # the same file, uploaded four times
        (docs / copy).write_text((docs / "bees.txt").read_text())
    Ingestor(store, embedder=embedder).ingest([docs])
    retriever = Retriever(store, embedder=embedder)
    hits = retriever.search("How do honey bees find flowers?", 3)
    texts = [h.chunk.text for h in hits]
    assert len(hits) == 3 and len(set(texts)) == 3, texts
    assert hits[0].chunk.source.startswith("bees") and [h.rank for h in hits] == [1, 2, 3]
    # k=2 reads candidates 2k=4 at a time: the four copies fill the first window, the second passage is further on
    two = retriever.search("How do honey bees find flowers?", 2)
    assert len(two) == 2 and not two[1].chunk.source.startswith("bees"), [h.chunk.source for h in two]


def test_evidence_signal_on_a_small_real_index(tmp_path: Path, store: Store, embedder: Embedder) -> None:
    Ingestor(store, embedder=embedder).ingest([_docs(tmp_path / "docs")])
    retriever = Retriever(store, embedder=embedder)
    answerable = [
        "Which ship carried tea from Foochow to London?",
        "How many bridges does the Glacier Express cross?",
        "How do honey bees tell each other where flowers are?",
    ]
    unanswerable = [
        "Who won the 1998 FIFA World Cup final?",
        "What is the boiling point of liquid nitrogen?",
        "Which composer wrote the opera Tosca?",
    ]
    for question in answerable:
        assert retriever.retrieve(question).evidence.found, question
    for question in unanswerable:
        evidence = retriever.retrieve(question).evidence
        assert not evidence.found, (question, evidence)
        assert retriever.retrieve(question).hits, "the closest passages are still returned to show the user"


def test_fast_query_embedding_matches_the_batch_path(embedder: Embedder) -> None:
    queries = ["How many points did the Panthers defense surrender?", "x", "Ω≈ç√ long query " * 80]
    batch = embedder.embed(queries)
    for query, row in zip(queries, batch, strict=True):
        single = embedder.embed_query(query)
        assert single.dtype == np.float32 and single.shape == (embedder.dim,)
        assert np.allclose(single, row, atol=1e-5)


def _dataset(folder: Path, docs: dict[str, str], questions: list[tuple[str, str, str]]) -> Path:
    (folder / "docs").mkdir(parents=True)
    for name, text in docs.items():
        (folder / "docs" / name).write_text(text)
    rows = [{"id": str(i), "question": q, "answers": [a], "source": s} for i, (q, a, s) in enumerate(questions)]
    (folder / "questions.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return folder


def test_eval_cli_reports_retrieval_speed_and_refusals(tmp_path: Path, run_cli) -> None:
    inside = _dataset(
        tmp_path / "in",
        {
            "ships.md": "# Ships\n\nThe clipper Zephyrine carried tea from Foochow to London in 1869.\n",
            "bees.md": "# Bees\n\nHoney bees tell each other where flowers are with a waggle dance.\n",
        },
        [
            ("Which clipper carried tea from Foochow?", "Zephyrine", "ships.md"),
            ("How do honey bees show where flowers are?", "waggle dance", "bees.md"),
        ],
    )
    outside = _dataset(
        tmp_path / "out",
        {"opera.md": "# Opera\n\nGiacomo Puccini wrote Tosca, first staged in Rome in 1900.\n"},
        [("Who wrote the opera Tosca?", "Puccini", "opera.md"), ("Where was Tosca first staged?", "Rome", "opera.md")],
    )
    result = run_cli("rag.eval", str(inside), "-k", "3", "--refusal", str(outside), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"questions", "hit@1", "hit@3", "mrr", "ingest_seconds", "chunks", "chunks_per_second", "query_ms_p50",
            "query_ms_p95", "refusal"} <= set(report)
    assert report["questions"] == 2 and report["hit@1"] == 1.0 and report["mrr"] == 1.0 and report["chunks"] == 2
    assert 0 < report["query_ms_p50"] <= report["query_ms_p95"]
    assert report["refusal"] == {"out_of_corpus_refused": 1.0, "in_corpus_refused": 0.0}


def test_question_sets_are_json_lines_split_at_newlines_only(tmp_path: Path, run_cli) -> None:
    """PubMedQA-style texts hold U+2029 (and U+2028, U+0085) inside JSON strings; str.splitlines() split them."""
    from rag.retrieval.evaluate import DatasetError, load_questions

    folder = tmp_path / "set"
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "abstract.md").write_text("# Trial\n\nThe trial enrolled 412 patients in Lyon.\n")
    question = "How many patients\u2029did the trial\u2028enroll\u0085in Lyon?"
    rows = [{"id": "1", "question": question, "answers": ["412"], "source": "abstract.md"}]
    (folder / "questions.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n\n", encoding="utf-8")
    assert [q.question for q in load_questions(folder)] == [question]
    result = run_cli("rag.eval", str(folder), "-k", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["hit@1"] == 1.0

    (folder / "questions.jsonl").write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(DatasetError, match=r"questions\.jsonl, line 2: not JSON"):
        load_questions(folder)
    bad = run_cli("rag.eval", str(folder), "--json")
    assert bad.returncode == 2 and "line 2" in bad.stderr and "Traceback" not in bad.stderr and not bad.stdout


def test_command_line_overrides_are_validated_like_settings(tmp_path: Path, run_cli) -> None:
    index = str(tmp_path / "index")
    cases = [("rag.ask", ["q", "-k", "-1"], "top_k: Input should be greater than or equal to 1"),
             ("rag.ask", ["q", "-k", "0"], "top_k: Input should be greater than or equal to 1"),
             ("rag.eval", [str(tmp_path), "-k", "0"], "top_k: Input should be greater than or equal to 1"),
             ("rag.search", ["q", "-k", "0"], "top_k: Input should be greater than or equal to 1"),
             ("rag.search", ["q", "-k", "501"], "top_k: Input should be less than or equal to 500"),
             ("rag.agent", ["q", "--max-steps", "0"], "agent_max_steps: Input should be greater than or equal to 1")]
    for module, args, reason in cases:
        result = run_cli(module, *args, "--index", index)
        assert result.returncode == 2, (module, args, result.stderr)
        last = result.stderr.strip().splitlines()[-1]  # argparse's usage line names every option: read the error
        assert "Traceback" not in result.stderr and reason in last, result.stderr
