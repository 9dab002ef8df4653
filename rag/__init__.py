"""The core: the index (``index``), finding passages (``retrieval``), answering from them (``answer``) with a
language model (``llm``), agent mode (``agent``) and its ``sandbox``. It never imports ``ingest``, the layer that
feeds it; the commands ``python -m rag.search``/``ask``/``eval``/``agent``/``sandbox`` are thin entry points."""
