"""The index: the storage interface the rest of the project depends on (``base.Index``); its embedded
implementation on disk, SQLite rows as the source of truth (``store``) with the dense and keyword search structures
derived from them; and the embedding model that makes the vectors (``embedder``, ``onnx_encoder``,
``embed_server``)."""
