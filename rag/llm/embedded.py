"""The ``embedded`` backend (the default): llama.cpp in this process, on a GGUF from ``rag.llm.models``.

Why in-process: the app works offline right after ``make setup`` with no server to start. The default model is
Qwen2.5-Coder-1.5B-Instruct (Q4_K_M); ``RAG_EMBEDDED_MODEL=smollm2-135m`` picks the ten times smaller SmolLM2, and
``RAG_LLM_MODEL_PATH`` any other chat GGUF.

The ``Llama`` instance is loaded on first use and shared by every ``EmbeddedLLM`` in the process (loading takes a
moment and up to ~1.9 GB). One llama.cpp context runs one request at a time, so a lock serialises generation, but
the lock is never held while a reader is away: each request generates in a worker thread into a queue that its
reader drains at its own pace (at most ``max_tokens`` pieces), so one slow or stalled browser session cannot hold
up the others; a reader that stops early (the stop button) cancels its worker.

Prompts are laid out so that llama.cpp reuses work: it keeps the KV cache of the last prompt and re-evaluates only
from the first token that differs, so the fixed system prompt with its worked examples, which opens every answer
prompt byte for byte, is evaluated once per process (``bench/llm.py`` measures the difference).
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import LLM, LLMRequestError, LLMUnavailable, Message, TokenProbs, Usage, check_messages
from .models import DEFAULT_EMBEDDED_MODEL, EmbeddedModel, get_model, model_path
from .registry import register

if TYPE_CHECKING:
    from rag.settings import Settings

# Both cores of the target machine.
DEFAULT_THREADS = 2
# llama.cpp's CPU threads meet at a barrier after every operation, and OpenMP's default is to spin there. When
# another process holds one of the two cores, the spinning thread takes the core from the thread it waits for and
# decoding collapses: measured here with the machine busy, 2 threads decoded 0.5 tokens/s spinning and 10.8 with
# OpenMP told to sleep at barriers (1 thread: 11-17). Set before llama.cpp (and its OpenMP runtime) is loaded;
# an OMP_WAIT_POLICY already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_load_lock = threading.Lock()
_loaded: dict[tuple[str, int, int], _Loaded] = {}
_END = object()


def load_cpu_backends() -> str:
    """Make llama.cpp's CPU backend available and say which instruction sets it uses.

    A build for runtime CPU dispatch (``GGML_BACKEND_DL`` + ``GGML_CPU_ALL_VARIANTS``, what the Makefile builds)
    ships one CPU backend per instruction-set level (``libggml-cpu-haswell.so``, ``-skylakex``, ``-icelake`` …;
    the wheel puts them in ``site-packages/bin``) and loads none by itself; llama-cpp-python does not call
    ``ggml_backend_load_all`` (abetlen/llama-cpp-python#2069), so this does, from that folder, and ggml picks the
    best variant this CPU supports (AVX-512 with VNNI/BF16 here). A plain build has its CPU backend linked in:
    nothing is loaded then.
    """
    import llama_cpp  # loads libllama, and with it the libggml it links to

    package = Path(llama_cpp.__file__).parent
    # The wheel holds libggml.so and libggml.so.0 as two copies of one library, each with its own backend registry:
    # open the one libllama is linked to (already loaded, so this returns that instance).
    lib = ctypes.CDLL(str(next(p for p in (package / "lib" / "libggml.so.0", package / "lib" / "libggml.so")
                               if p.is_file())))
    lib.ggml_backend_reg_count.restype = ctypes.c_size_t
    lib.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    for folder in (package / "lib", package.parent / "bin"):
        if lib.ggml_backend_reg_count() == 0 and any(folder.glob("libggml-cpu-*.so")):
            lib.ggml_backend_load_all_from_path(str(folder).encode())
    if lib.ggml_backend_reg_count() == 0:
        raise LLMUnavailable(f"llama.cpp found no CPU backend (looked in {package / 'lib'} and {package.parent / 'bin'}); "
                             "reinstall llama-cpp-python: make setup")
    return " ".join(_cpu_features(lib)) or str(llama_cpp.llama_print_system_info())


class _Feature(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


def _cpu_features(lib: Any) -> list[str]:
    """The features the CPU backend reports through ggml's registry ("AVX512", "AVX512_VNNI", …)."""
    lib.ggml_backend_reg_get.restype, lib.ggml_backend_reg_get.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    lib.ggml_backend_reg_name.restype, lib.ggml_backend_reg_name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    lib.ggml_backend_reg_get_proc_address.restype = ctypes.c_void_p
    lib.ggml_backend_reg_get_proc_address.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    for i in range(lib.ggml_backend_reg_count()):
        reg = lib.ggml_backend_reg_get(i)
        address = lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_get_features")
        if lib.ggml_backend_reg_name(reg) != b"CPU" or not address:
            continue
        features = ctypes.CFUNCTYPE(ctypes.POINTER(_Feature), ctypes.c_void_p)(address)(reg)
        found, n = [], 0
        while features[n].name:
            if features[n].value == b"1":
                found.append(features[n].name.decode())
            n += 1
        return found
    return []


class _Loaded:
    """One llama.cpp model, its chat formatter (the GGUF's own template) and the lock around its context."""

    def __init__(self, llama: Any, formatter: Any) -> None:
        self.llama = llama
        self.formatter = formatter
        self.lock = threading.Lock()

    def render(self, messages: list[Message]) -> tuple[Any, list[int]]:
        """The messages in the GGUF's chat template (with its stop strings) and its tokens: one rendering for
        writing an answer and for reading a reply back, so both see the same prompt."""
        formatted = self.formatter(messages=messages)
        return formatted, self.llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=False, special=True)


def _load(path: Path, n_ctx: int, n_threads: int) -> _Loaded:
    """Load once per (file, n_ctx, threads) per process; later calls return the same instance."""
    key = (str(path), n_ctx, n_threads)
    with _load_lock:
        if key in _loaded:
            return _loaded[key]
        if not path.is_file():
            raise LLMUnavailable(f"the chat model file {path} does not exist")
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise LLMUnavailable(f"llama-cpp-python is not installed ({exc}); run: make setup") from exc
        load_cpu_backends()
        try:
            # flash_attn: prompt evaluation about 8 % faster here (700 tokens cold: 2.95 s against 3.2 s).
            llama = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                          flash_attn=True, verbose=False)  # llama.cpp otherwise prints its load log to stdout/stderr
        except (ValueError, RuntimeError) as exc:
            raise LLMUnavailable(f"llama.cpp could not load {path}: {exc}") from exc
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise LLMUnavailable(f"{path.name} carries no chat template; the embedded backend needs one")
        eos_id, bos_id = llama.token_eos(), llama.token_bos()
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
            with loaded.lock:  # a worker still generating finishes its token first
                try:
                    loaded.llama.close()
                except Exception:  # noqa: BLE001 - best effort at exit
                    pass
        _loaded.clear()


def _read(llama: Any, prompt: list[int], tokens: list[int]) -> list[float]:
    """Teacher forcing in batches: ``tokens`` fed after ``prompt`` as the model's own, each one's log-probability
    read from the logits of the token before it. The longest prefix of ``prompt`` the KV cache already holds is not
    evaluated again. llama-cpp-python keeps the logits of a batch's last token only (unless ``logits_all`` is set
    for the whole context: n_ctx rows of the vocabulary, about 1.2 GB here), so the batch of the prompt's last token
    and the reply is decoded through its lower-level context with logits asked for every token, and its token
    bookkeeping (``input_ids``, ``n_tokens``) is kept as ``Llama.eval`` keeps it, so the next prompt reuses the
    cache. One batch instead of one evaluation per token (a logits processor forcing each token, 55 ms a token here:
    docs/verifier.md has the cost measured both ways)."""
    import numpy as np

    shared = llama.longest_token_prefix(llama.input_ids[: llama.n_tokens].tolist(), prompt[:-1])
    llama.n_tokens = shared
    if shared < len(prompt) - 1:
        llama.eval(prompt[shared:-1])
    feed, logprobs = [prompt[-1], *tokens[:-1]], []
    for start in range(0, len(feed), llama.n_batch):
        batch = feed[start : start + llama.n_batch]
        llama._ctx.kv_cache_seq_rm(-1, llama.n_tokens, -1)
        llama._batch.set_batch(batch=batch, n_past=llama.n_tokens, logits_all=True)
        llama._ctx.decode(llama._batch)
        llama.input_ids[llama.n_tokens : llama.n_tokens + len(batch)] = batch
        llama.n_tokens += len(batch)
        logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(len(batch), llama.n_vocab()))
        logits = logits.astype(np.float64)
        top = logits.max(axis=1)
        log_z = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        logprobs += [float(logits[i, t] - log_z[i]) for i, t in enumerate(tokens[start : start + len(batch)])]
    return logprobs


class _TokenRecorder:
    """A llama.cpp logits processor that changes nothing and notes how probable each written token was.

    It is called with the tokens so far and the next token's logits; the token chosen from those logits shows up
    at the end of the next call's tokens, so each call scores the previous call's choice (the last token, the end
    of turn, is never scored). Costs a softmax over the vocabulary per token, well under a millisecond here.
    """

    def __init__(self) -> None:
        self._previous: Any = None
        self.scored: list[tuple[int, float]] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        if self._previous is not None and len(input_ids):
            token = int(input_ids[-1])
            self.scored.append((token, float(self._previous[token])))
        shifted = np.exp(scores.astype(np.float64) - scores.max())
        self._previous = shifted / shifted.sum()
        return scores

    def token_probs(self, llama: Any) -> TokenProbs:
        return TokenProbs(tuple((llama.detokenize([t]).decode("utf-8", "replace"), p) for t, p in self.scored))


@register("embedded")
class EmbeddedLLM(LLM):
    """A chat GGUF through llama-cpp-python, no network: a model of ``rag.llm.models`` by name, or a file."""

    title = "Embedded (in-process)"
    rewrites_queries = False  # a small model rewrites follow-ups worse than joining them to the question before

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        model_name: str = DEFAULT_EMBEDDED_MODEL,
        n_ctx: int | None = None,
        n_threads: int = DEFAULT_THREADS,
        temperature: float = 0.0,
    ) -> None:
        super().__init__(temperature=temperature)
        self._path = Path(model_path) if model_path is not None else None
        self._spec: EmbeddedModel | None = None if self._path is not None else get_model(model_name)
        self._n_ctx = n_ctx or (self._spec.n_ctx if self._spec else 2048)
        self._n_threads = n_threads
        self.model = (self._path.name if self._path is not None else self._spec.file_name).removesuffix(".gguf")

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedLLM:
        """Settings used: ``embedded_model`` (or ``llm_model_path``), ``llm_n_ctx``, ``llm_threads``, ``temperature``."""
        return cls(settings.llm_model_path, model_name=settings.embedded_model, n_ctx=settings.llm_n_ctx,
                   n_threads=settings.llm_threads, temperature=settings.temperature)

    @property
    def context_window(self) -> int:
        return self._n_ctx

    @property
    def model_path(self) -> Path:
        """The GGUF file (an assembled model is assembled and verified here on first use if ``make setup`` did not)."""
        if self._path is None:
            assert self._spec is not None
            self._path = model_path(self._spec)
        return self._path

    def _model(self) -> _Loaded:
        return _load(self.model_path, self._n_ctx, self._n_threads)

    @property
    def loaded(self) -> bool:
        """Whether this process has loaded the model yet (the sidebar shows it; health() must not load it)."""
        return any(key[1:] == (self._n_ctx, self._n_threads) and Path(key[0]).name == f"{self.model}.gguf"
                   for key in _loaded)

    def _generate(self, messages: list[Message], *, max_tokens: int, temperature: float,
                  stop: list[str], seed: int | None = None) -> Iterator[str | Usage | TokenProbs]:
        """Text deltas rendered with the GGUF's chat template, then the usage: ``prompt_tokens`` exact (the tokens
        fed to the model), ``completion_tokens`` counted from the answer (llama-cpp-python's stream does not
        report usage; it can differ by the end-of-turn token)."""
        loaded = self._model()
        llama = loaded.llama
        formatted, prompt = loaded.render(messages)
        if len(prompt) + 1 > self._n_ctx:
            raise LLMRequestError(
                f"the prompt is {len(prompt)} tokens, more than the model's context window of {self._n_ctx}"
            )
        # llama.cpp would silently cut the answer at the window's end; make the budget explicit instead.
        budget = min(max_tokens, self._n_ctx - len(prompt))
        pieces: queue.SimpleQueue[object] = queue.SimpleQueue()  # at most `budget` pieces, then _END
        cancel = threading.Event()

        def work() -> None:
            try:
                with loaded.lock:
                    text: list[str] = []
                    sure = _TokenRecorder()
                    for chunk in llama.create_completion(
                        prompt=prompt, max_tokens=budget, temperature=temperature, stream=True, seed=seed,
                        stop=stop + list(formatted.stop or []), stopping_criteria=formatted.stopping_criteria,
                        logits_processor=LogitsProcessorList([sure]),
                    ):
                        if cancel.is_set():
                            break
                        if piece := chunk["choices"][0]["text"]:
                            text.append(piece)
                            pieces.put(piece)
                    answer = "".join(text)
                    written = len(llama.tokenize(answer.encode("utf-8"), add_bos=False, special=False)) if answer else 0
                    pieces.put(sure.token_probs(llama))
                pieces.put(Usage(prompt_tokens=len(prompt), completion_tokens=written))
            except ValueError as exc:  # llama-cpp-python reports a prompt over n_ctx this way
                pieces.put(LLMRequestError(f"the embedded model refused the request: {exc}"))
            except Exception as exc:  # noqa: BLE001 - handed to the reader, which raises it
                pieces.put(exc)
            finally:
                pieces.put(_END)

        from llama_cpp import LogitsProcessorList

        threading.Thread(target=work, name="llama-generate", daemon=True).start()
        try:
            while (item := pieces.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            cancel.set()  # the reader stopped early (or finished): a worker still generating stops at its next token

    def reply_logprobs(self, messages: list[Message], reply: str) -> list[float] | None:
        """Teacher forcing: ``reply``'s tokens fed as the answer and each one scored (``_read``). The prompt's longest
        prefix shared with the last one is not evaluated again (its KV cache is kept)."""
        check_messages(messages)
        loaded = self._model()
        llama = loaded.llama
        prompt = loaded.render(messages)[1]
        tokens = llama.tokenize(reply.encode("utf-8"), add_bos=False, special=False)
        if not tokens:
            return []
        if len(prompt) + len(tokens) + 1 > self._n_ctx:
            raise LLMRequestError(f"the prompt and reply are {len(prompt) + len(tokens)} tokens, more than the "
                                  f"model's context window of {self._n_ctx}")
        with loaded.lock:
            try:
                return _read(llama, prompt, tokens)
            except RuntimeError as exc:  # llama_decode failed: nothing of it is kept
                llama.n_tokens = 0
                raise LLMRequestError(f"the embedded model could not read the reply: {exc}") from exc

    def warm(self, head: list[Message]) -> None:
        """Load the model and evaluate ``head`` into llama.cpp's KV cache, unless it is already busy or has evaluated
        a prompt: the next prompt that opens with ``head`` then evaluates only what follows it (llama-cpp-python
        keeps the longest common prefix of the last prompt)."""
        loaded = self._model()
        # The head as it opens a prompt: the rendering up to where a following user turn's text would begin.
        one, two = (loaded.formatter(messages=[*head, {"role": "user", "content": c}]).prompt for c in ("x", "y"))
        prefix = one[: next(i for i, (a, b) in enumerate(zip(one, two, strict=True)) if a != b)]
        tokens = loaded.llama.tokenize(prefix.encode("utf-8"), add_bos=False, special=True)
        if len(tokens) + 1 > self._n_ctx or not loaded.lock.acquire(blocking=False):
            return
        try:
            if loaded.llama.n_tokens == 0:
                loaded.llama.eval(tokens)
        finally:
            loaded.lock.release()

    def count_tokens(self, text: str) -> int:
        """Exact count with the model's own tokenizer (loads the model on first call)."""
        if not text:
            return 0
        llama = self._model().llama
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def health(self) -> tuple[bool, str]:
        """Cheap: checks that the library and the model file (or its parts) are there, without loading the model."""
        try:
            if self._spec is not None and not self._spec.package and self._path is None:
                from .models import MODELS_DIR, part_files

                if not (MODELS_DIR / self._spec.file_name).is_file():
                    part_files(self._spec)  # assembled on first question; the parts must be installed
            elif not self.model_path.is_file():
                return False, f"the chat model file {self.model_path} does not exist"
            if importlib.util.find_spec("llama_cpp") is None:
                return False, "llama-cpp-python is not installed; run: make setup"
        except LLMUnavailable as exc:
            return False, str(exc)
        except Exception as exc:  # noqa: BLE001 - the sidebar must render whatever happens
            return False, f"embedded model check failed: {exc}"
        state = "loaded" if self.loaded else "loads on first question"
        return True, f"{self.model} in-process via llama.cpp ({state}, context {self._n_ctx} tokens)"
