"""The one settings object. Every knob is an environment variable with the ``RAG_`` prefix, grouped by the component
that reads it.

    python -m rag.settings NAME      # prints one setting as the environment makes it (the Makefile reads some)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class PathSettings(BaseModel):
    """Where things live."""

    index_dir: Path = PROJECT_ROOT / "data" / "index"
    upload_dir: Path | None = None  # None: "uploads" beside the index folder
    conversations_file: Path | None = None  # None: "conversations.sqlite" beside the index folder

    @property
    def uploads_path(self) -> Path:
        return self.upload_dir or self.index_dir.parent / "uploads"

    @property
    def conversations_path(self) -> Path:
        return self.conversations_file or self.index_dir.parent / "conversations.sqlite"


class SplitSettings(BaseModel):
    """Splitting documents into chunks (sizes are in the embedding model's word pieces)."""

    chunk_tokens: int = Field(254, ge=16, le=254)  # the model reads 256 pieces, 2 are markers
    chunk_overlap: int = Field(64, ge=0)
    heading_context: bool = True  # index each chunk with its section heading


class EmbedSettings(BaseModel):
    """The embedding model (bench/embedders.py measures the variants; docs/benchmarks.md has the figures)."""

    # onnx-int8: ONNX Runtime, int8 weights (default: fastest, retrieval holds); onnx: ONNX Runtime, float32 (the
    # same vectors as torch); torch: sentence-transformers; openai: an OpenAI-compatible /v1/embeddings server at
    # embed_url (vLLM serves embedding models). None: openai when embed_url is set, else onnx-int8.
    embed_backend: Literal["onnx-int8", "onnx", "torch", "openai"] | None = None
    embed_url: str | None = None  # e.g. http://127.0.0.1:8001/v1
    embed_model: str = "all-MiniLM-L6-v2"  # the model's name on that server (the index records it)
    embed_api_key: str = "local-dev-key"
    embed_batch_size: int = Field(32, ge=1)  # texts per PyTorch call or server request (ONNX: one text a call)
    embed_window: int = Field(64, ge=1)  # chunks gathered across files, sorted by length, then embedded
    embed_threads: int = Field(0, ge=0)  # texts embedded at once, one ONNX session of one thread each; 0: one per core

    @property
    def embedding_backend(self) -> str:
        """The embedding backend in force: the one chosen, else the server when a URL is set, else ONNX int8."""
        return self.embed_backend or ("openai" if self.embed_url else "onnx-int8")


class IngestSettings(BaseModel):
    """Adding documents."""

    parse_ahead: bool = True  # read and split the next files in a separate process while the current ones embed
    write_wait_seconds: float = Field(120.0, gt=0)  # an ingest waits this long for another one to finish
    max_upload_mb: int = Field(50, ge=1)  # per file; `make run` hands it to Streamlit (server.maxUploadSize)
    ocr_threads: int = Field(0, ge=0)  # ONNX Runtime threads of the OCR engine (scanned pages); 0: one per core
    # Fan-out (ingest/fanout.py): workers of a Dask cluster read, OCR and embed the files, this process writes them.
    ingest_workers: int = Field(0, ge=0, le=64)  # a local cluster of this many one-thread processes per run; 0: none
    ingest_cluster: str | None = Field(None, pattern=r"^tcp://[^\s/]+:\d+$")  # an existing scheduler (wins over workers)
    ingest_cluster_timeout: float = Field(10.0, gt=0, le=600)  # seconds to reach the scheduler and one of its workers


class DenseIndexSettings(BaseModel):
    """The dense index (rag/index/dense.py; the figures behind the defaults: bench/dense_indexes.py, bench/scale.py)."""

    dense_exact_limit: int = Field(50_000, ge=0)  # chunks below which search is exact (FAISS Flat), IVF-SQ8 above
    dense_merge_rows: int = Field(20_000, ge=1)  # rows written or deleted since the snapshot before it is rebuilt
    dense_nprobe: int = Field(32, ge=1)  # IVF lists searched per query: at least this many, and a tenth of them


class StoreSettings(BaseModel):
    """Where the index lives: the embedded FAISS + SQLite folder (``index_dir``), or a Milvus server (rag/index/milvus/)."""

    store: Literal["embedded", "milvus"] = "embedded"
    milvus_uri: str = "http://127.0.0.1:19530"  # `make milvus` serves one on loopback; a cluster's proxy address
    milvus_token: str = ""  # "user:password" or an API key; empty for a server without authentication
    # The collections' prefix; None: one derived from the index folder (each --index folder is its own index)
    milvus_collection: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
    milvus_timeout: float = Field(10.0, gt=0)  # seconds per request before the server counts as unreachable
    # This machine's name in document identities (rag/index/identity.py); None: /etc/machine-id, else the host name
    host_id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RetrievalSettings(BaseModel):
    """Finding passages: the one bound on how many (``top_k``) serves every command's ``-k`` too."""

    top_k: int = Field(5, ge=1, le=500)  # passages per answer; the same bound for every command's -k (search lists more)
    retrieval_mode: Literal["hybrid", "dense", "keyword"] = "hybrid"
    fusion: Literal["rrf", "convex"] = "convex"
    dense_weight: float = Field(1.0, ge=0.0)
    sparse_weight: float = Field(1.0, ge=0.0)
    rrf_k: int = Field(60, ge=1)
    candidates: int = Field(30, ge=1, le=500)  # per retriever, before fusion
    # Passages scoring under this share of the best one are not given to the model nor listed as sources. On
    # xquad-dev the answering passage scores under half the best one for 0.2 % of questions (in each search mode),
    # while most of the weak tail of the top k does (bench/retrieval.py prints both figures). With fusion="rrf" the
    # scores come from ranks, not from how well a passage matches: there the cut drops only ~6 % of the tail.
    min_relative_score: float = Field(0.5, ge=0.0, le=1.0)


class LLMSettings(BaseModel):
    """The chat model: which backend runs it, and how it is reached."""

    llm: str = "embedded"  # a backend registered in rag/llm/ (rag.llm.backend_names()): embedded, openai
    # embedded: a model of rag/llm/models.py (qwen2.5-coder-1.5b, the default; smollm2-135m: fast, toy quality)
    embedded_model: str = "qwen2.5-coder-1.5b"
    llm_url: str = "http://127.0.0.1:8000/v1"
    llm_model: str = "smollm2-135m"  # openai: the model name the server serves
    llm_api_key: str = "local-dev-key"
    llm_timeout: float = Field(120.0, gt=0)  # seconds per request to the server
    llm_max_retries: int = Field(2, ge=0, le=10)  # on connection errors
    llm_context_window: int | None = None  # None: ask the server (vLLM reports max_model_len)
    llm_n_ctx: int | None = Field(None, ge=256)  # embedded model's context; None: the model's own (4096, or 2048)
    llm_threads: int = Field(2, ge=1)
    llm_model_path: Path | None = None  # embedded: another chat GGUF file instead of embedded_model

    def api_key_for(self, url: str) -> str:
        """The configured API key if ``url`` is the configured server, else "": a key is never sent to a server it
        was not configured for (a URL typed in the sidebar could be anyone's)."""
        return self.llm_api_key if url.strip().rstrip("/") == self.llm_url.strip().rstrip("/") else ""

    @property
    def chat_model(self) -> str:
        """The model the chosen backend runs: the embedded model's name, or the name the server serves."""
        return str(getattr(self, self.chat_model_field(self.llm)))

    @staticmethod
    def chat_model_field(backend: str) -> str:
        """The setting that names ``backend``'s model: ``llm_model`` for a server, ``embedded_model`` in-process."""
        from rag.llm.registry import backend_class  # the backends import these settings

        return "llm_model" if backend_class(backend).remote else "embedded_model"


class AnswerSettings(BaseModel):
    """Writing an answer from the passages."""

    temperature: float = Field(0.0, ge=0.0, le=2.0)  # greedy: the answer most supported by the passages
    max_answer_tokens: int = Field(384, ge=16, le=4096)
    history_turns: int = Field(2, ge=0, le=20)  # earlier question/answer pairs shown to the model
    rewrite: Literal["auto", "model", "concat"] = "auto"  # how follow-ups become standalone queries
    # An answer that fails a check (rag.answer: grounding, support, confidence): "show" it under a warning note, or
    # "withhold" it: say it could not be confirmed, and give the model's words only inside the note.
    unverified_answers: Literal["show", "withhold"] = "show"


class AgentSettings(BaseModel):
    """Agent mode (rag/agent)."""

    agent_max_steps: int = Field(6, ge=1, le=50)  # model turns per question (each is an action or the final answer)
    agent_step_tokens: int = Field(256, ge=16, le=4096)  # tokens the model may write in one turn
    agent_max_tokens: int = Field(2048, ge=64)  # tokens the model may write over the whole run
    agent_search_k: int = Field(3, ge=1, le=20)  # passages one search_documents call returns
    agent_python_timeout: float = Field(5.0, gt=0, le=60)  # seconds of wall time for one python tool call
    agent_python_memory_mb: int = Field(256, ge=32, le=4096)  # memory budget of one python tool call
    # Refuse to run programs when the OS will not apply the sandbox's namespaces, read-only mounts or uid drop
    # (the language guards, audit hook and rlimits hold anyway; a refused layer is always reported).
    agent_sandbox_strict: bool = False
    agent_max_format_errors: int = Field(2, ge=1, le=50)  # malformed replies in a row before giving up
    agent_fallback: bool = True  # no final answer: answer with the plain grounded answer step instead


class APISettings(BaseModel):
    """The HTTP API (``python -m rag.api``): who may call it, and how much it takes on at once."""

    api_keys: str = ""  # comma-separated keys for "Authorization: Bearer KEY"; none (and no file): loopback only
    api_keys_file: Path | None = None  # a file of keys, one a line ("#" starts a comment), beside or instead of them
    api_max_body_mb: int = Field(100, ge=1)  # one upload request, all its files together (each: max_upload_mb)
    api_max_json_kb: int = Field(1024, ge=1)  # any other request body
    api_concurrency: int = Field(1, ge=1, le=64)  # answers generated at once (the embedded model writes one at a time)
    api_queue: int = Field(8, ge=0, le=1000)  # answers waiting for the model beyond those; more are told 429
    api_max_tokens: int = Field(1024, ge=16, le=4096)  # the most a request's max_tokens may ask for

    @property
    def api_key_list(self) -> list[str]:
        """Every key configured: ``api_keys`` and the lines of ``api_keys_file`` (read now: a changed file counts
        at the next start)."""
        keys = [k.strip() for k in self.api_keys.split(",")]
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text(encoding="utf-8").splitlines()
            keys += [line.split("#", 1)[0].strip() for line in lines]
        return [k for k in keys if k]


class Settings(PathSettings, SplitSettings, EmbedSettings, IngestSettings, StoreSettings, DenseIndexSettings,
               RetrievalSettings, LLMSettings, AnswerSettings, AgentSettings, APISettings, BaseSettings):
    """All settings, read from the environment (``RAG_TOP_K`` sets ``top_k``). Each component declares its group
    above and takes that group (a ``Settings`` is each of them); limits are declared there once."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    def changed(self, **updates: object) -> Settings:
        """These settings with ``updates`` applied and validated like the environment is (a bad value raises
        ``pydantic.ValidationError``): the one way the page and the command-line options change a setting.

        Every field is given, so the environment is not read again (``model_validate`` on a ``BaseSettings`` reads
        every source, and given values win anyway): 0.05 ms instead of 5, and the page changes its settings four
        times a run, before each answer."""
        changed = type(self).__new__(type(self))
        BaseModel.__init__(changed, **{**self.model_dump(), **updates})
        return changed


def bounds(field: str) -> tuple[float | None, float | None]:
    """The declared lower and upper limits of a setting (``bounds("top_k") == (1, 50)``), for sliders and options."""
    low = high = None
    for rule in Settings.model_fields[field].metadata:
        low = getattr(rule, "ge", getattr(rule, "gt", low))
        high = getattr(rule, "le", getattr(rule, "lt", high))
    return low, high


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()


if __name__ == "__main__":
    import sys

    print(getattr(get_settings(), sys.argv[1]))
