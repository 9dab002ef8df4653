"""The index on disk: SQLite rows as the source of truth (``store``), the dense and keyword search structures
derived from them, and the embedding model that makes the vectors (``embedder``, ``onnx_encoder``,
``embed_server``)."""
