"""``python -m rag.search "QUERY" [-k 5] [--index DIR] [--json]``: the passages the retriever finds for a query."""

from __future__ import annotations

from rag.answer.result import source_label
from rag.cli import open_index, parser, print_json, run, say
from rag.retrieval.retriever import Retriever


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m rag.search", "Search the index for passages matching a query.")
    p.add_argument("query", help="what to look for")
    p.add_argument("-k", type=int, default=5, help="how many passages (default 5)")
    args = p.parse_args(argv)
    if not 1 <= args.k <= 500:
        p.error("-k must be between 1 and 500")
    hits = Retriever(open_index(args)).search(args.query, args.k)
    if args.json:
        print_json([hit.to_json() for hit in hits])
        return 0
    if not hits:
        say("no passages: the index is empty")
    for hit in hits:
        print(f"[{hit.rank}] {hit.score:.3f}  {source_label(hit.chunk.source, hit.chunk.page, hit.chunk.kind)}")
        print("    " + hit.chunk.text[:300].replace("\n", " ") + ("…" if len(hit.chunk.text) > 300 else ""))
    return 0


if __name__ == "__main__":
    run(main)
