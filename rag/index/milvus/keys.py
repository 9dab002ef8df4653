"""Document identity on Milvus: the docs row's primary field ``path`` holds the document's key
(``rag.index.identity``), ``source`` the local path the last writer read the file from.

An index written by the previous release keyed its rows by plain absolute paths, in a docs collection without
``source`` (Milvus Lite cannot add a field to a collection: ``add_collection_field`` is unimplemented there). Reads
take both forms: a plain path is this host's file (its key computed here, its path itself), and where a row of
each form names one key the keyed row wins. The first writer then rewrites the old rows under their keys
(``upgrade``), each by an upsert of the keyed row before the delete of the old one, so a reader never misses a
document; rows that turn out to name one file (a folder indexed twice through a symlink) keep the newest. In such
a collection a keyed row has no ``source``: its local path is the key's path on this host (``local_path``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rag.index.identity import is_key, key_or_legacy, local_path, mount_table
from rag.index.labels import unique_labels
from rag.index.milvus.common import _PLACEHOLDER, _quote

if TYPE_CHECKING:
    from rag.index.milvus.store import MilvusStore

KEYED = "keyed"  # meta "identity" once every docs row is keyed


def by_key(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{key: row} of docs rows of either form, each row given ``key`` and its local ``source``."""
    table = mount_table()
    found: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (is_key(r["path"]), r["updated_at"])):  # the keyed and newest win
        key = key_or_legacy(row["path"], table=table)
        source = row.get("source") or (local_path(key, table=table) if is_key(row["path"]) else row["path"])
        found[key] = {**row, "key": key, "source": source}
    return found


def docs_row(row: dict[str, Any], sourced: bool) -> dict[str, Any]:
    """A row as the docs collection takes it (without the fields reads add, with ``source`` where it exists)."""
    out = {k: v for k, v in row.items() if k not in ("key", "source")}
    out["path"] = row["key"]
    if sourced:
        out["source"] = row["source"]
    return {**out, "placeholder": _PLACEHOLDER}


def relabel(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows (of one base file name) whose labels change, with their new labels."""
    labels = unique_labels({r["key"]: r["base"] for r in rows})
    return [{**r, "name": labels[r["key"]]} for r in rows if labels[r["key"]] != r["name"]]


def upgrade(store: MilvusStore) -> None:
    """Rewrite the rows of the previous release under their keys (the writer holds the lease)."""
    if store._meta("identity") == KEYED:
        return
    rows = [r for page in store._query_all(store._docs_name, "doc_id > 0", store._doc_fields, "reading the documents")
            for r in page]
    keep = by_key(rows)
    table = mount_table()
    for row in (r for r in rows if not is_key(r["path"])):
        winner = keep[key_or_legacy(row["path"], table=table)]
        if winner["path"] == row["path"]:  # this row is the document: the keyed row first, then the old one goes
            store._call("upgrading the documents", store._client.upsert, store._docs_name,
                        [docs_row(winner, store._sourced)], timeout=store._timeout)
        elif (winner["doc_id"], winner["version"]) != (row["doc_id"], row["version"]):
            store._retire(row["doc_id"], row["version"])  # an older copy of a file kept under another path
        store._call("upgrading the documents", store._client.delete, store._docs_name,
                    filter=f"path == {_quote(row['path'])}", timeout=store._timeout)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in keep.values():
        groups.setdefault(row["file_name"], []).append(row)
    changed = [docs_row(r, store._sourced) for group in groups.values() for r in relabel(group)]
    if changed:
        store._call("relabelling documents", store._client.upsert, store._docs_name, changed, timeout=store._timeout)
    store._set_meta("identity", KEYED)
    store._bump()
