"""Split a question set (docs/ + questions.jsonl) into two halves by document, alternating in name order.

    python scripts/split_dataset.py ../shared/eval/xquad-dev /tmp/half-a /tmp/half-b
    python -m rag.eval /tmp/half-a --refusal /tmp/half-b --json

Each half gets its own documents and only the questions about them: index one half, ask the other's questions,
and every one of them should be refused.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rag.retrieval.evaluate import read_jsonl  # noqa: E402


def split(dataset: Path, out_a: Path, out_b: Path) -> None:
    names = sorted(p.name for p in (dataset / "docs").iterdir() if p.is_file())
    halves = {out_a: set(names[0::2]), out_b: set(names[1::2])}
    rows = read_jsonl(dataset / "questions.jsonl")
    for out, docs in halves.items():
        (out / "docs").mkdir(parents=True, exist_ok=True)
        for name in docs:
            shutil.copy(dataset / "docs" / name, out / "docs" / name)
        with open(out / "questions.jsonl", "w") as handle:
            for row in rows:
                if row["source"] in docs:
                    handle.write(json.dumps(row) + "\n")  # ASCII: U+2029 is escaped


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    split(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
