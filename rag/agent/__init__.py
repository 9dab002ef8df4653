"""Agent mode: a ReAct loop (``loop``) that parses each model turn (``reply``), runs typed tools (``tools``: document
search, ``calculator``, sandboxed Python), keeps the transcript inside the context window (``transcript``) and
reports what happens as events (``events``). ``python -m rag.agent`` runs it in a terminal."""
