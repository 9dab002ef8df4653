"""The right page first on real PDFs: hit@1 and hit@5 by page on an index of the real-PDF set.

    scripts/real_pdfs.sh && .venv/bin/python -m ingest ~/.cache/rag-real-pdfs/pdfs --index DIR
    .venv/bin/python bench/real_pages.py DIR [--questions bench/real_questions.jsonl] [-k 5]

Questions (bench/real_questions.jsonl): written by hand from the pages of the set's manuals and slides, each with
the file and the 1-based page that answers it (rows of id, question, answers, source, page). The files whose text
other files repeat (the ACM and REVTeX samples share their template text) are left out, so one page is right. A
hit is a result from that file and page; the document columns count any page of the right file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("index", type=Path)
    p.add_argument("--questions", type=Path, default=HERE / "real_questions.jsonl")
    p.add_argument("-k", type=int, default=5)
    args = p.parse_args()
    from rag.index.store import open_store
    from rag.retrieval.retriever import Retriever

    rows = [json.loads(line) for line in args.questions.read_text(encoding="utf-8").splitlines() if line.strip()]
    retriever = Retriever(open_store(args.index, create=False))
    page_ranks, doc_ranks = [], []
    for row in rows:
        hits = retriever.search(row["question"], args.k)
        same_doc = [h for h in hits if Path(h.chunk.source).name == row["source"]]
        page_ranks.append(next((h.rank for h in same_doc if h.chunk.page == row["page"]), None))
        doc_ranks.append(same_doc[0].rank if same_doc else None)
        got = ", ".join(f"{Path(h.chunk.source).stem} p{h.chunk.page}" for h in hits[:3])
        print(f"{row['id']}: page rank {page_ranks[-1]}, document rank {doc_ranks[-1]}; top 3: {got}")

    def rate(ranks: list[int | None], k: int) -> float:
        return sum(r is not None and r <= k for r in ranks) / len(ranks)

    print(f"\n{len(rows)} questions | page hit@1 {rate(page_ranks, 1):.3f} | page hit@{args.k} "
          f"{rate(page_ranks, args.k):.3f} | document hit@1 {rate(doc_ranks, 1):.3f} | document hit@{args.k} "
          f"{rate(doc_ranks, args.k):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
