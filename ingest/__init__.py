"""Files in: load → split → embed → store into ``rag.index``. This layer sits on top of ``rag`` (it writes the index
that ``rag`` reads); ``rag`` never imports it, except the application service (``rag.service``) built on both."""
