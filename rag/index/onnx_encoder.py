"""The embedding model run by ONNX Runtime: exported once from sentence-transformers, optionally quantised to int8.

Why: on this CPU the same MiniLM embeds documents about twice as fast through onnxruntime as through PyTorch in
float32, and about three times as fast with int8 weights (``bench/embedders.py``); one short query takes ~4.5 ms
instead of 13-20 ms, and a command that loads an exported file never imports torch. The float32 export computes
the same vectors as sentence-transformers (tests check this to 1e-5); the int8 file does not (cosine ~0.99 to the
float32 vector), so an index records which of the two made its vectors. Files are written beside the other
converted models (``data/models``), aside first and then renamed, once per model.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def fingerprint(model_dir: Path) -> str:
    """Names the exported file after the weights it came from."""
    weights = model_dir / "model.safetensors"
    digest = hashlib.sha256(str(weights.stat().st_size).encode())
    with open(weights, "rb") as handle:
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:12]


def write_aside(target: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, then rename the result to ``target``: a crash never leaves half a model file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export(model: SentenceTransformer, target: Path) -> None:
    """Write the transformer of ``model`` as ONNX (dynamic batch and sequence length)."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids, position_ids):  # noqa: ANN001, ANN201
            # Position ids are an input: traced, the model would bake in the example's length.
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             position_ids=position_ids).last_hidden_state

    example = torch.ones((1, 8), dtype=torch.long)

    def write(tmp: str) -> None:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python ints: position ids are an input
            torch.onnx.export(
                Encoder(model[0].auto_model).eval(),
                (example, example, torch.zeros_like(example), torch.arange(8)[None]),
                tmp,
                input_names=list(INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUTS},
                opset_version=17,
                dynamo=False,
            )

    write_aside(target, write)


def quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of ``source``'s weights, one scale per output channel.

    Per channel: one scale per weight matrix (the default) moved vectors to cosine 0.89 from float32 on one text
    here; per channel they stay above 0.98. ``reduce_range`` (7-bit weights) keeps the int8 products from
    saturating on CPUs without VNNI, so the same file gives the same vectors on any x86 machine.
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    def write(tmp: str) -> None:
        quantize_dynamic(source, tmp, per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)

    # It logs a hint (a pre-processing pass, which changed nothing here) through the root logger, which would
    # otherwise install a handler that prints every library's debug lines afterwards.
    quiet = logging.NullHandler()
    logging.getLogger().addHandler(quiet)
    try:
        write_aside(target, write)
    finally:
        logging.getLogger().removeHandler(quiet)


class OnnxEncoder:
    """Unit-length, mean-pooled sentence vectors from an exported model.

    One session of one thread per core (``threads``; 0: the cores), each in a thread of its own taking the next of a
    batch's texts, rather than one session whose threads share every text: measured here on 2 cores with the
    int8 model, 206-238 texts a second against 146-174 (texts of ~230 word pieces), the vectors the same bit for
    bit, and a short query in 1.4 ms against 2.1 ms. One small text gives a pool of threads little to share, two
    texts at once keep both cores busy. ONNX Runtime lets several threads run one session each at once (it releases
    the GIL)."""

    def __init__(self, path: Path, tokenizer: Tokenizer, max_tokens: int, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.sessions: list[InferenceSession] = [
            ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for _ in range(threads or os.cpu_count() or 1)]
        self.session = self.sessions[0]  # for a query, and for anyone running the model directly
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens  # word pieces, without [CLS] and [SEP]
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()  # each pool thread's own session

    def encode(self, text: str) -> np.ndarray:
        """One text, one model call. Measured here (bench/embedders.py --batch-sizes), one text a call beats padded
        batches of 4 to 32 texts even sorted by length (no padding at all), and with int8 weights it keeps a
        text's vector independent of its batch-mates: the activations' scale is computed over the whole input."""
        return self._run(self.session, self._ids(text))

    def encode_many(self, texts: list[str]) -> np.ndarray:
        """Each text as ``encode`` makes it; with several sessions, each thread of the pool runs its own session and
        takes the next text when it is done (texts differ in length: dealing them out in turns would leave a core
        idle at the end of every batch)."""
        ids = [self._cut(encoding.ids) for encoding in self.tokenizer.encode_batch(texts)]
        if len(self.sessions) == 1 or len(ids) < 2:
            return np.vstack([self._run(self.session, i) for i in ids])
        if self._pool is None:
            spare = list(self.sessions)
            self._pool = ThreadPoolExecutor(len(spare), thread_name_prefix="onnx-encoder",
                                            initializer=lambda: setattr(self._local, "session", spare.pop()))
        return np.vstack(list(self._pool.map(lambda i: self._run(self._local.session, i), ids)))

    def _ids(self, text: str) -> list[int]:
        return self._cut(self.tokenizer.encode(text).ids)  # with [CLS] ... [SEP]

    def _cut(self, ids: list[int]) -> list[int]:
        """What sentence-transformers does with a long text: cut it, keep the closing [SEP]."""
        return ids if len(ids) <= self.max_tokens + 2 else ids[: self.max_tokens + 1] + ids[-1:]

    @staticmethod
    def _run(session: InferenceSession, ids: list[int]) -> np.ndarray:
        n = len(ids)
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, n), dtype=np.int64),
            "token_type_ids": np.zeros((1, n), dtype=np.int64),
            "position_ids": np.arange(n, dtype=np.int64)[None],
        }
        vector = session.run(None, feeds)[0][0].mean(axis=0)  # mean pooling (one sequence, no padding)
        return (vector / np.linalg.norm(vector)).astype(np.float32)
