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
import warnings
from collections.abc import Callable
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
    """Unit-length, mean-pooled sentence vectors from an exported model."""

    def __init__(self, path: Path, tokenizer: Tokenizer, max_tokens: int, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: the parse-ahead process needs the core between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session: InferenceSession = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens  # word pieces, without [CLS] and [SEP]

    def encode(self, text: str) -> np.ndarray:
        """One text, one model call. Measured here (bench/embedders.py --batch-sizes), one text a call beats padded
        batches of 4 to 32 texts even sorted by length (no padding at all), and with int8 weights it keeps a
        text's vector independent of its batch-mates: the activations' scale is computed over the whole input."""
        ids = self.tokenizer.encode(text).ids  # with [CLS] ... [SEP]
        if len(ids) > self.max_tokens + 2:  # what sentence-transformers does: cut, keep the closing [SEP]
            ids = ids[: self.max_tokens + 1] + ids[-1:]
        n = len(ids)
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, n), dtype=np.int64),
            "token_type_ids": np.zeros((1, n), dtype=np.int64),
            "position_ids": np.arange(n, dtype=np.int64)[None],
        }
        vector = self.session.run(None, feeds)[0][0].mean(axis=0)  # mean pooling (one sequence, no padding)
        return (vector / np.linalg.norm(vector)).astype(np.float32)
