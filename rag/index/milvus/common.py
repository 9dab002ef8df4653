"""What the Milvus store's modules share: Milvus's limits, the collections' fields, filter literals."""

from __future__ import annotations

import json
from typing import Any, TypeVar

T = TypeVar("T")

_MAX_LIMIT = 16_384  # Milvus's largest top-k and query page
_TEXT = 65_535  # Milvus's longest VARCHAR
_DOC_FIELDS = ["path", "doc_id", "version", "name", "base", "file_name", "kind", "sha256", "size", "pages", "recipe",
               "added_at", "updated_at", "chunks", "tokens"]
_CHUNK_FIELDS = ["id", "doc_id", "version", "page", "section", "start", "end", "ordinal", "text", "context"]
_PLACEHOLDER = [1.0, 0.0]  # docs and meta rows carry a 2-d vector: Milvus wants one in every collection


def _quote(text: str) -> str:
    return json.dumps(text)  # a Milvus filter's string literal: double quotes, backslash escapes


def schemas(c: Any, dim: int) -> list[tuple[str, Any, Any]]:
    """The three collections' schemas and index parameters, by suffix: chunks, docs, then meta (made last: its
    existence marks an index made whole)."""
    from pymilvus import DataType, Function, FunctionType

    chunks = c.create_schema(auto_id=False)
    chunks.add_field("id", DataType.INT64, is_primary=True)
    chunks.add_field("doc_id", DataType.INT64)
    chunks.add_field("version", DataType.INT64)
    chunks.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    chunks.add_field("stems", DataType.VARCHAR, max_length=_TEXT, enable_analyzer=True, enable_match=True,
                     analyzer_params={"tokenizer": "standard"})
    chunks.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    chunks.add_field("text", DataType.VARCHAR, max_length=_TEXT)
    chunks.add_field("context", DataType.VARCHAR, max_length=_TEXT, nullable=True)
    chunks.add_field("section", DataType.VARCHAR, max_length=_TEXT, nullable=True)
    chunks.add_field("page", DataType.INT64, nullable=True)
    for name in ("start", "end", "ordinal", "n_tokens"):
        chunks.add_field(name, DataType.INT64)
    chunks.add_field("sha256", DataType.VARCHAR, max_length=64)
    chunks.add_function(Function(name="stems_bm25", function_type=FunctionType.BM25,
                                 input_field_names=["stems"], output_field_names=["sparse"]))
    index = c.prepare_index_params()
    index.add_index("vector", index_type="AUTOINDEX", metric_type="IP")
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                    params={"bm25_k1": 1.5, "bm25_b": 0.75})

    docs = c.create_schema(auto_id=False)
    docs.add_field("path", DataType.VARCHAR, is_primary=True, max_length=4096)  # the key (rag.index.identity)
    docs.add_field("source", DataType.VARCHAR, max_length=4096, nullable=True)  # the last writer's local path
    for name in ("doc_id", "version", "size", "chunks", "tokens"):
        docs.add_field(name, DataType.INT64)
    docs.add_field("pages", DataType.INT64, nullable=True)
    for name in ("name", "base", "file_name", "recipe"):
        docs.add_field(name, DataType.VARCHAR, max_length=4096)
    for name in ("kind", "sha256", "added_at", "updated_at"):
        docs.add_field(name, DataType.VARCHAR, max_length=128)
    docs.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)

    meta = c.create_schema(auto_id=False)
    meta.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
    meta.add_field("value", DataType.VARCHAR, max_length=_TEXT)
    meta.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)

    def placeholder_index() -> Any:
        params = c.prepare_index_params()
        params.add_index("placeholder", index_type="AUTOINDEX", metric_type="IP")
        return params

    return [("chunks", chunks, index), ("docs", docs, placeholder_index()), ("meta", meta, placeholder_index())]
