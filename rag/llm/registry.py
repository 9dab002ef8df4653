"""Backends register themselves under a name; ``get_llm`` builds the one the settings name.

A backend is one module in this package whose ``LLM`` subclass carries ``@register("name")`` and builds itself
``from_settings``. Every module here is imported on the first lookup, so a third backend is one new file
(the way simonw/llm finds its model plugins, without the plugin machinery).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from rag.llm.base import LLM, LLMError

if TYPE_CHECKING:
    from rag.settings import Settings

_BACKENDS: dict[str, type[LLM]] = {}
_NOT_BACKENDS = {"base", "registry", "models"}
_discovered = False
L = TypeVar("L", bound=type[LLM])


def register(name: str) -> Callable[[L], L]:
    """Class decorator: make an ``LLM`` subclass available as ``RAG_LLM=name``."""

    def add(cls: L) -> L:
        if name in _BACKENDS and _BACKENDS[name] is not cls:
            raise ValueError(f"two LLM backends are called {name!r}: {_BACKENDS[name].__name__} and {cls.__name__}")
        cls.backend = name
        _BACKENDS[name] = cls
        return cls

    return add


def backends() -> dict[str, type[LLM]]:
    """Every registered backend by name, in registration order (the modules of this package are imported once)."""
    global _discovered
    if not _discovered:
        package = importlib.import_module(__package__ or "rag.llm")
        for module in pkgutil.iter_modules(package.__path__):
            if module.name not in _NOT_BACKENDS and not module.name.startswith("_"):
                importlib.import_module(f"{package.__name__}.{module.name}")
        _discovered = True
    return dict(_BACKENDS)


def backend_names() -> list[str]:
    return list(backends())


def backend_class(name: str) -> type[LLM]:
    """The registered class of a backend (its ``title`` and ``remote`` tell the settings page what to show)."""
    found = backends().get(name)
    if found is None:
        raise LLMError(f"unknown LLM backend {name!r}; set RAG_LLM to one of: {', '.join(backends())}")
    return found


def get_llm(settings: Settings | None = None) -> LLM:
    """The backend the settings name (``RAG_LLM``). Cheap: nothing loads or connects until the first request."""
    if settings is None:
        from rag.settings import get_settings

        settings = get_settings()
    return backend_class(settings.llm).from_settings(settings)
