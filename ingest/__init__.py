"""Files in: load → split → embed → store into ``rag.index``, and the user's document library built on it.
This layer sits on top of ``rag`` (it writes the index that ``rag`` reads); ``rag`` never imports it."""
