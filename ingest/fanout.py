"""Fan-out ingest: the workers of a Dask cluster read (parse, OCR), split and embed files; the ingest process writes.

Why Dask distributed rather than Ray: its wheels are pure Python (about 1 MB, against Ray's ~70 MB binary with its
own GCS and raylet daemons); a machine joins with ``dask worker tcp://HOST:8786`` run in the project's environment,
and ``LocalCluster`` gives the same thing on one machine. Ingest needs only ``submit`` and ``as_completed``, none
of Ray's actors.

A run (``Ingestor`` opens ``FanOut`` when ``ingest_workers`` or ``ingest_cluster`` is set):
- it starts a local cluster of N one-thread worker processes on 127.0.0.1 for the run, or connects to a scheduler;
- every worker loads the embedding model the index records (same name, dimensions and weights) before any file
  goes out, or the run stops with an ``EmbeddingError`` naming the worker;
- each file's bytes travel with its task, so a worker on another machine needs no shared filesystem: it writes
  them to a temporary file of the same name and loads that; it sends back the chunks, the texts it embedded and
  their vectors, or the reason the file failed (``ingest.parse.failure_reason``); at most two files per worker
  thread are out at once, so memory stays bounded however large the library;
- a file whose worker dies under it (``KilledWorker``) is run once more, alone on the cluster; if a worker dies
  under it again it fails with that reason, and files that only shared a worker with it are stored as usual;
- a cluster left with no worker for ``ingest_cluster_timeout`` seconds (its machines gone) ends the run with a
  ``ClusterError`` instead of waiting for ever; the files stored so far are kept.
Only the ingest process writes: it stores each file through the store interface as it comes back (``Ingestor``).
Unlike the single process, workers embed every chunk of a changed file again (they do not see the index's vectors).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from ingest.loaders import LoadedDocument
from ingest.parse import ParseFailure, SplitConfig, failure_reason, parse_file, plain_main
from ingest.pipeline import SPLITTER_VERSION, indexed_texts
from ingest.split import Chunk
from rag.errors import ClusterError, EmbeddingError
from rag.index.embedder import Embedder, make_embedder
from rag.index.onnx_encoder import fingerprint
from rag.settings import EmbedSettings, Settings, SplitSettings, get_settings

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster, Worker, as_completed

IN_FLIGHT_PER_THREAD = 2  # files out per worker thread: one read, one waiting with its bytes already there
WAIT_STEP = 2.0  # seconds between looks at the cluster while no file comes back
# The environment of a local cluster's workers: Dask's own defaults for its workers less MALLOC_TRIM_THRESHOLD_,
# which makes glibc unmap every large buffer when it is freed; OCR allocates and frees page images all the time,
# and ran 1.6 times slower with it (a scanned PDF: 13.1 s against 8.3 s on this machine).
WORKER_ENVIRON = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
CRASHED = ParseFailure("a worker process stopped twice while reading this file (it crashed or ran out of memory)",
                       "WorkerCrashed")


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to read and embed a file exactly as the ingest process would: the settings that shape
    chunks and vectors (with the embedding backend the index's model needs), and the model the index records."""

    settings: tuple[tuple[str, object], ...]  # (name, value) of the split and embedding settings
    model: str
    dim: int
    weights: str | None  # fingerprint of the model's weights; None when a server embeds
    splitter: int  # the ingest process's SPLITTER_VERSION: a worker with other code would cut other chunks

    @classmethod
    def of(cls, settings: Settings, embedder: Embedder) -> WorkerSpec:
        shaping = {name: getattr(settings, name) for name in [*SplitSettings.model_fields, *EmbedSettings.model_fields]
                   if name != "embed_threads"}  # threads are each worker machine's own (its RAG_EMBED_THREADS)
        shaping["embed_backend"] = embedder.backend  # the index's model decides (an older index: float32)
        weights = None if embedder.backend == "openai" else fingerprint(embedder.path)
        return cls(tuple(sorted(shaping.items())), embedder.name, embedder.dim, weights, SPLITTER_VERSION)


@dataclass(frozen=True)
class Embedded:
    """One file read, split and embedded by a worker."""

    document: LoadedDocument
    chunks: list[Chunk]
    contexts: list[str | None]
    texts: list[str]  # what was embedded: each chunk with its context line
    vectors: np.ndarray  # one unit row per text


# --- on a worker ----------------------------------------------------------------------------------------------------


def _this_worker() -> Worker | None:
    """The Dask worker running this code; None outside one (a test calling these functions directly)."""
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


def _worker_name() -> str:
    worker = _this_worker()
    return worker.address if worker else f"{os.uname().nodename} (process {os.getpid()})"


@lru_cache(maxsize=2)
def worker_model(spec: WorkerSpec) -> tuple[Settings, Embedder]:
    """This worker's settings and loaded model for ``spec`` (once per process), or an ``EmbeddingError`` that says
    why it cannot make the vectors the index holds."""
    where = _worker_name()
    if spec.splitter != SPLITTER_VERSION:  # its chunks would be stored under this process's recipe, never redone
        raise ValueError(f"worker {where} cuts chunks with the project's splitter version {SPLITTER_VERSION}, this "
                         f"ingest with version {spec.splitter}: run the same version of the project there")
    try:
        settings = get_settings().changed(**dict(spec.settings))
        embedder = make_embedder(settings)
        embedder.load()
        weights = None if spec.weights is None else fingerprint(embedder.path)
    except Exception as exc:  # noqa: BLE001 - whatever stops the model loading, the run must say so plainly
        raise EmbeddingError(f"worker {where} cannot load the embedding model {spec.model} that the index records "
                             f"({type(exc).__name__}: {exc})") from None
    if (embedder.name, embedder.dim, weights) != (spec.model, spec.dim, spec.weights):
        raise EmbeddingError(
            f"worker {where} runs the embedding model {embedder.name} ({embedder.dim} dims, weights {weights}), not "
            f"{spec.model} ({spec.dim} dims, weights {spec.weights}) that the index records: install the project's "
            "requirements there")
    return settings, embedder


def check_worker(spec: WorkerSpec) -> str:
    """Load the index's model on this worker now (see ``worker_model``); returns the worker's name."""
    worker_model(spec)
    return _worker_name()


def read_and_embed(path: str, data: bytes, spec: WorkerSpec) -> Embedded | ParseFailure:
    """One file's bytes in; its chunks and vectors out, or the reason it failed. ``path`` is where the ingest
    process read it: the bytes are written to a temporary file of the same name (the loader goes by its suffix).
    An ``EmbeddingError`` (the model cannot run here) is raised: it stops the run, as it does in one process."""
    settings, embedder = worker_model(spec)
    worker = _this_worker()  # its own folder: Dask clears it after the worker, also after a crash (/tmp would not)
    with tempfile.TemporaryDirectory(prefix="rag-fanout-", dir=worker.local_directory if worker else None) as folder:
        copy = Path(folder) / Path(path).name
        try:
            copy.write_bytes(data)
        except OSError as exc:  # the worker's disk is full, say: this file fails here, not the run
            return failure_reason(exc)
        parsed = parse_file(copy, SplitConfig.of(embedder, settings))
    if isinstance(parsed, ParseFailure):
        return parsed
    contexts, texts = indexed_texts(parsed.chunks, settings, parsed.document.title)
    try:
        vectors = embedder.embed(texts, batch_size=settings.embed_batch_size)
    except EmbeddingError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model failed on this file's text: the file fails, not the run
        return failure_reason(exc)
    return Embedded(replace(parsed.document, path=Path(path)), parsed.chunks, contexts, texts, vectors)


# --- in the ingest process ------------------------------------------------------------------------------------------


@contextmanager
def local_cluster(workers: int, settings: Settings | None = None) -> Iterator[LocalCluster]:
    """A scheduler and ``workers`` one-thread worker processes on 127.0.0.1, closed on leaving. A worker that dies
    fails its files at once (``allowed_failures=0``): ``FanOut`` decides which file killed it.

    The cores are shared out: ONNX Runtime (the embedding model, and the OCR engine) would start a thread per core
    in every worker, and N workers would then run N threads a core, spinning against each other (on 2 cores, 2
    workers took 60 % more CPU time for the same scanned pages). ``settings``' own thread counts win."""
    import dask
    from distributed import LocalCluster

    settings = settings or get_settings()
    share = str(max(1, (os.cpu_count() or 1) // workers))
    environ = {**WORKER_ENVIRON, "RAG_EMBED_THREADS": str(settings.embed_threads or share),
               "RAG_OCR_THREADS": str(settings.ocr_threads or share)}
    # The workers are spawned interpreters: never the page's app.py again. Their environment is given to each as it
    # starts (the nanny's env), none of it set in this process, as Dask's pre-spawn environment would be.
    with plain_main(), dask.config.set({"distributed.nanny.pre-spawn-environ": {}}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               scheduler_port=0, dashboard_address=None, silence_logs=logging.CRITICAL,
                               scheduler_kwargs={"allowed_failures": 0}, env=environ)
    try:
        yield cluster
    finally:
        cluster.close()


class FanOut:
    """The cluster one ingest run reads and embeds on."""

    def __init__(self, client: Client, address: str, spec: WorkerSpec, timeout: float = 10.0) -> None:
        self.client = client
        self.address = address
        self.spec = spec
        self.timeout = timeout  # seconds without a worker before the run gives up
        self.workerless_since: float | None = None

    @classmethod
    @contextmanager
    def open(cls, settings: Settings, embedder: Embedder) -> Iterator[FanOut]:
        """Connect to ``settings.ingest_cluster``, or start a local cluster of ``settings.ingest_workers`` for the
        run, and check every worker's model; a ``ClusterError`` names the address that cannot be used."""
        import dask
        from distributed import Client
        from distributed.utils import silence_logging_cmgr

        with ExitStack() as stack:
            # Dask's own log lines (tracebacks while it reconnects, a worker restarted) would bury the progress bars
            # and the report: the run says what went wrong itself.
            stack.enter_context(silence_logging_cmgr(logging.CRITICAL))
            # A file's bytes travel in its task (Dask warns about tasks over 10 MB: a PDF is often larger).
            stack.enter_context(dask.config.set({"distributed.admin.large-graph-warning-threshold": "2GiB"}))
            address = settings.ingest_cluster
            if not address:
                address = stack.enter_context(local_cluster(settings.ingest_workers, settings)).scheduler_address
            timeout = settings.ingest_cluster_timeout
            try:
                client = stack.enter_context(Client(address, timeout=timeout, set_as_default=False))
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"no Dask scheduler answers at {address} ({exc})") from None
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                raise ClusterError(f"the Dask scheduler at {address} has no workers after {timeout:g} s (start "
                                   f"some with `dask worker {address}` in the project's environment)") from None
            fan = cls(client, address, WorkerSpec.of(settings, embedder), timeout)
            fan.check_workers()
            yield fan

    def check_workers(self) -> None:
        """Every worker loads the index's model now, or the run stops naming the first that cannot (a worker that
        joins later is checked by its first file)."""
        checks = {worker: self.client.submit(check_worker, self.spec, workers=[worker], pure=False)
                  for worker in sorted(self.client.scheduler_info()["workers"])}
        for worker, check in checks.items():
            try:
                error = check.exception(timeout=self.timeout + 120)  # the model loads: seconds, not minutes
            except TimeoutError:
                raise ClusterError(f"worker {worker} of the Dask cluster at {self.address} did not load the embedding "
                                   "model (it left the cluster, or is stuck)") from None
            if error is not None:
                self._raise(error, worker)

    def workers(self) -> dict[str, dict]:
        """The cluster's workers now (they may join or leave during a run)."""
        try:
            return self.client.scheduler_info()["workers"]
        except Exception:  # noqa: BLE001 - Dask's comm errors differ by version: the scheduler is gone either way
            raise self._stopped() from None

    def threads(self) -> int:
        """Worker threads in the cluster now."""
        return max(1, sum(w["nthreads"] for w in self.workers().values()))

    def first_done(self, finished: as_completed) -> Future:
        """The next future ``finished`` has ready, while the cluster has workers (``still_workers``)."""
        looked = time.monotonic()
        while not finished.has_ready():
            time.sleep(0.05)
            if time.monotonic() - looked >= WAIT_STEP:
                self.still_workers()
                looked = time.monotonic()
        return next(finished)

    def still_workers(self) -> None:
        """A ``ClusterError`` once the cluster has had no worker for ``timeout`` seconds: its tasks would otherwise
        wait for ever for a machine that is gone."""
        now = time.monotonic()
        if self.workers():
            self.workerless_since = None
        elif self.workerless_since is None:
            self.workerless_since = now
        elif now - self.workerless_since > self.timeout:
            raise ClusterError(f"the Dask cluster at {self.address} has had no workers for {self.timeout:g} s; the "
                               "files stored so far are kept, run the same command again for the rest")

    def read_and_embed(self, paths: Sequence[Path]) -> Iterator[tuple[int, Embedded | ParseFailure]]:
        """Each file's outcome with its position in ``paths``, as the workers finish them (not in order)."""
        from distributed import as_completed

        todo = deque(range(len(paths)))
        suspects: deque[int] = deque()  # files whose worker died under them: each runs again, alone
        alone: set[int] = set()
        running: dict[Future, int] = {}
        finished = as_completed(loop=self.client.loop)

        def submit(n: int) -> ParseFailure | None:
            try:
                data = paths[n].read_bytes()
            except OSError as exc:  # gone or unreadable since it was hashed
                return failure_reason(exc)
            future = self.client.submit(read_and_embed, str(paths[n]), data, self.spec, pure=False)
            running[future] = n
            finished.add(future)
            return None

        try:
            while todo or suspects or running:
                if suspects and not running:  # the cluster has finished the others: the next suspect runs alone
                    alone.add(n := suspects.popleft())
                    if unread := submit(n):
                        yield n, unread
                # nothing new goes out beside a suspect running alone, nor while suspects wait for their turn
                lone = not suspects and not alone.intersection(running.values())
                limit = IN_FLIGHT_PER_THREAD * self.threads() if todo and lone else 0
                while todo and len(running) < limit:
                    if unread := submit(n := todo.popleft()):
                        yield n, unread
                if running:
                    n = running.pop(future := self.first_done(finished))
                    outcome = self._outcome(future, n in alone)
                    if outcome is None:
                        suspects.append(n)
                    else:
                        yield n, outcome
        finally:
            self.client.cancel(list(running))

    def _outcome(self, future: Future, alone: bool) -> Embedded | ParseFailure | None:
        """A finished task's outcome; None when its worker died under it and the file should run again alone."""
        from concurrent.futures import CancelledError

        from distributed import KilledWorker

        try:
            while True:  # a result lost with its worker after it finished is computed again: on a worker left
                try:
                    return future.result(timeout=WAIT_STEP)
                except TimeoutError:
                    self.still_workers()
        except KilledWorker:
            return CRASHED if alone else None
        except CancelledError:
            raise self._stopped() from None
        except ClusterError:
            raise
        except Exception as error:  # noqa: BLE001 - the task itself never raises for a file: the worker is wrong
            self._raise(error, None)

    def _stopped(self) -> ClusterError:
        return ClusterError(f"the Dask scheduler at {self.address} stopped answering; the files stored so far are "
                            "kept, run the same command again for the rest")

    def _raise(self, error: BaseException, worker: str | None) -> NoReturn:
        if isinstance(error, EmbeddingError):
            raise EmbeddingError(str(error)) from None
        where = f"worker {worker}" if worker else "a worker"
        raise ClusterError(f"{where} of the Dask cluster at {self.address} cannot run ingest tasks "
                           f"({type(error).__name__}: {error}); start workers in the project's folder and environment"
                           ) from None
