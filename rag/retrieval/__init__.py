"""Finding passages: dense and keyword search fused (``retriever``, ``fusion``), and whether they hold evidence for
an answer at all (``evidence``)."""
