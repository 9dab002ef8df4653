"""The Streamlit page in parts: shared resources, the sidebar, the chat. ``app.py`` puts them together;
everything here renders, the work is done in ``rag`` and ``ingest``."""
