"""The HTTP API: ``python -m rag.api``. OpenAI-compatible chat over the documents (``/v1/chat/completions`` with the
citations and checks in the extra field ``rag``), the documents (``/v1/documents``) and search (``/v1/search``),
behind API keys, on the same index, settings and application service (``rag.service``) as the page. docs/api.md
describes it; ``app`` builds the FastAPI application, ``guards`` checks keys and sizes, ``gate`` queues requests for
the model."""
