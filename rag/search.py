"""``python -m rag.search "QUERY" [-k 5] [--index DIR] [--json]``: the passages the retriever finds for a query."""

from __future__ import annotations

from rag.answer.result import source_label
from rag.cli import add_k_option, parser, print_json, run, say, settings_with
from rag.service import Service


def main(argv: list[str] | None = None) -> int:
    p = parser("python -m rag.search", "Search the index for passages matching a query.")
    p.add_argument("query", help="what to look for")
    add_k_option(p, "how many passages")
    args = p.parse_args(argv)
    settings = settings_with(p, top_k=args.k)
    rows = Service.for_command(args, settings, read_only=True).search(args.query, settings.top_k)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        say("no passages: the index is empty")
    for row in rows:
        text = str(row["text"])
        where = source_label(str(row["source"]), row["page"], row["kind"], row["section"])  # type: ignore[arg-type]
        print(f"[{row['rank']}] {row['score']:.3f}  {where}")
        print("    " + text[:300].replace("\n", " ") + ("…" if len(text) > 300 else ""))
    return 0


if __name__ == "__main__":
    run(main)
