"""Queries through the same MiniLM, exported once to ONNX and run with onnxruntime.

One short query is a poor fit for PyTorch's eager mode on a CPU: measured here, the same forward pass takes
~4.5 ms in onnxruntime against ~13-20 ms in PyTorch, and a command that only searches no longer imports torch at
all once the file exists. The exported graph computes the same vectors as sentence-transformers (tests check
this to 1e-5). The file is written beside the other converted models (``data/models``), once per model.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import warnings
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


def export(model: SentenceTransformer, target: Path) -> None:
    """Write the transformer of ``model`` as ONNX (dynamic sequence length), aside first, then renamed."""
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
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
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
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


class QueryEncoder:
    """Unit-length query vectors from an ONNX export of the embedding model."""

    def __init__(self, path: Path, tokenizer: Tokenizer, max_tokens: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = min(os.cpu_count() or 1, 4)
        options.inter_op_num_threads = 1
        self.session: InferenceSession = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens  # word pieces, without [CLS] and [SEP]
        self._lock = threading.Lock()

    def encode(self, text: str) -> np.ndarray:
        encoding = self.tokenizer.encode(text)  # with [CLS] ... [SEP]
        ids = encoding.ids
        if len(ids) > self.max_tokens + 2:  # what sentence-transformers does: cut, keep the closing [SEP]
            ids = ids[: self.max_tokens + 1] + ids[-1:]
        n = len(ids)
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, n), dtype=np.int64),
            "token_type_ids": np.zeros((1, n), dtype=np.int64),
            "position_ids": np.arange(n, dtype=np.int64)[None],
        }
        with self._lock:
            hidden = self.session.run(None, feeds)[0][0]
        vector = hidden.mean(axis=0)  # mean pooling (one sequence, no padding)
        return (vector / np.linalg.norm(vector)).astype(np.float32)
