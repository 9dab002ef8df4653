"""Read-only commands never write: pointed at a folder that holds no index (a mistyped ``--index``), they say so
and exit 2, leaving the path as it was; only adding documents creates an index."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.index.store import NoIndexError, Store, open_store

READERS = [("rag.search", "q"), ("rag.ask", "q"), ("rag.agent", "q"), ("ingest", "--list"),
           ("ingest", "--remove", "a.txt")]


@pytest.mark.parametrize(("module", "args"), [(m, a) for m, *a in READERS], ids=[" ".join(r) for r in READERS])
def test_a_read_only_command_on_a_missing_index_exits_2_and_creates_nothing(run_cli, tmp_path: Path, module: str,
                                                                            args: list[str]) -> None:
    missing = tmp_path / "typo" / "index"
    result = run_cli(module, *args, "--index", str(missing))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"error: {missing}: there is no index at this path" in result.stderr, result.stderr
    assert "python -m ingest" in result.stderr, result.stderr
    assert not (tmp_path / "typo").exists(), "nothing is created on the way"


def test_an_empty_folder_is_no_index_and_stays_empty(run_cli, tmp_path: Path) -> None:
    result = run_cli("rag.search", "q", "--index", str(tmp_path))
    assert result.returncode == 2 and f"error: {tmp_path}: there is no index at this path" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_ingesting_creates_the_index_that_the_readers_then_open(run_cli, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.txt").write_text("The lighthouse was automated in 1989.")
    index = tmp_path / "new" / "index"
    assert run_cli("ingest", str(docs), "--index", str(index)).returncode == 0
    assert (index / "index.sqlite").is_file()
    listed = run_cli("ingest", "--list", "--index", str(index))
    assert listed.returncode == 0 and listed.stdout.startswith("note.txt\t"), listed.stderr


def test_the_store_opens_read_only_without_touching_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(NoIndexError, match="there is no index at this path"):
        open_store(missing, create=False)
    with pytest.raises(NoIndexError):
        Store(missing, embed_model="t", dim=4, create=False)
    assert not missing.exists()
    Store(missing, embed_model="t", dim=4).close()  # creating is the default for writers
    Store(missing, embed_model="t", dim=4, create=False).close()
