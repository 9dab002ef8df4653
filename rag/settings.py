"""The one settings object. Every knob is an environment variable with the ``RAG_`` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    # --- where things live
    index_dir: Path = PROJECT_ROOT / "data" / "index"
    upload_dir: Path = PROJECT_ROOT / "data" / "uploads"

    # --- splitting (sizes are in the embedding model's word pieces)
    chunk_tokens: int = Field(128, ge=16, le=254)
    chunk_overlap: int = Field(32, ge=0)

    # --- embedding
    embed_batch_size: int = Field(32, ge=1)

    # --- retrieval
    top_k: int = Field(5, ge=1, le=50)

    # --- answering
    llm: Literal["embedded", "openai"] = "embedded"
    llm_url: str = "http://127.0.0.1:8000/v1"
    llm_model: str = "smollm2-135m"
    llm_api_key: str = "local-dev-key"
    temperature: float = Field(0.1, ge=0.0, le=2.0)

    # --- upload limits
    max_upload_mb: int = Field(50, ge=1)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
