"""The index on a Milvus server (``RAG_STORE=milvus``): ``store.MilvusStore``, its writing half in ``writer``."""

from rag.index.milvus.store import GRPC_OPTIONS, MilvusStore, collection_prefix
from rag.index.milvus.writer import RETIRE_SECONDS

__all__ = ["GRPC_OPTIONS", "RETIRE_SECONDS", "MilvusStore", "collection_prefix"]
