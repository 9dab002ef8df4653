"""Embedding variants side by side: PyTorch float32, ONNX float32, ONNX int8 (the deployment-optimisation table).

    .venv/bin/python bench/embedders.py [DATASET_DIR] [--rounds 3] [--skip-quality]

For each variant, in the same run: chunks/s embedding the dataset's chunks (a fresh process per measurement,
rounds interleaved so a busy machine slows every variant alike; the median is printed), load time, peak memory
of that process, model size on disk, and retrieval quality through the whole shipped pipeline: hit@1/hit@5 of
``python -m rag.eval DATASET --json`` and the refusal rates of ``rag.eval HALF --refusal OTHER_HALF`` both ways
(the halves of ``scripts/split_dataset.py``), each run with ``RAG_EMBED_BACKEND`` set to the variant, so
documents and queries go through it. ``--batch-sizes`` instead times ONNX with padded batches of 1 to 32 texts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_SET = ROOT.parent / "shared" / "eval" / "xquad-dev"
VARIANTS = {"torch": "PyTorch fp32 (sentence-transformers)", "onnx": "ONNX fp32", "onnx-int8": "ONNX int8"}
CHUNKS_REPEAT = 2  # the 114 xquad-dev chunks twice, so one measurement lasts long enough to mean something


def dataset_texts(dataset: Path) -> list[str]:
    """The texts ingest embeds for ``dataset``'s documents (chunks with their heading line)."""
    from ingest.parse import Parsed, SplitConfig, parse_file
    from ingest.pipeline import chunk_context
    from rag.index.embedder import MODEL_NAME, model_dir
    from rag.index.records import indexed_text
    from rag.settings import Settings

    settings = Settings()
    config = SplitConfig(model_dir(), settings.chunk_tokens, settings.chunk_overlap, 254)
    texts = []
    for path in sorted((dataset / "docs").iterdir()):
        parsed = parse_file(path, config)
        assert isinstance(parsed, Parsed), (path, parsed, MODEL_NAME)
        texts += [indexed_text(c.text, chunk_context(c, settings)) for c in parsed.chunks]
    return texts


def measure(variant: str, dataset: Path) -> dict[str, float]:
    """In this (fresh) process: load the variant, embed the chunks, report speed and peak memory."""
    from rag.index.embedder import make_embedder
    from rag.settings import Settings

    texts = dataset_texts(dataset) * CHUNKS_REPEAT
    embedder = make_embedder(Settings(embed_backend=variant))
    started = time.perf_counter()
    embedder.load()
    loaded = time.perf_counter()
    embedder.embed(sorted(texts, key=len), batch_size=32)
    done = time.perf_counter()
    return {"chunks_per_second": len(texts) / (done - loaded), "load_seconds": loaded - started,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def model_size_mb(variant: str) -> float:
    from rag.index.embedder import OnnxEmbedder, model_dir

    if variant == "torch":
        return (model_dir() / "model.safetensors").stat().st_size / 1e6
    return OnnxEmbedder(int8=variant == "onnx-int8").model_file().stat().st_size / 1e6


def run_json(args: list[str], variant: str) -> dict:
    env = {**os.environ, "RAG_EMBED_BACKEND": variant, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({variant}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout)


def quality(variant: str, dataset: Path, halves: tuple[Path, Path]) -> dict[str, float]:
    full = run_json(["-m", "rag.eval", str(dataset), "--json"], variant)
    a, b = halves
    b_in = run_json(["-m", "rag.eval", str(b), "--refusal", str(a), "--json"], variant)["refusal"]
    a_in = run_json(["-m", "rag.eval", str(a), "--refusal", str(b), "--json"], variant)["refusal"]
    return {"hit@1": full["hit@1"], "hit@5": full["hit@5"],
            "out_refused_b": b_in["out_of_corpus_refused"], "in_refused_b": b_in["in_corpus_refused"],
            "out_refused_a": a_in["out_of_corpus_refused"], "in_refused_a": a_in["in_corpus_refused"]}


def cut(ids: list[int], max_tokens: int) -> list[int]:
    """What sentence-transformers (and ``OnnxEncoder``) do with a long text: keep the start and the closing [SEP]."""
    return ids if len(ids) <= max_tokens + 2 else ids[: max_tokens + 1] + ids[-1:]


def batch_sizes(dataset: Path) -> None:
    """ONNX with padded batches (sorted by length) against one text per call, both variants, same run."""
    import numpy as np

    from rag.index.embedder import OnnxEmbedder

    texts = sorted(dataset_texts(dataset), key=len)
    for embedder in (OnnxEmbedder(int8=True), OnnxEmbedder()):
        encoder = embedder.encoder()
        tokenizer = embedder.tokenizer
        single = np.vstack([encoder.encode(t) for t in texts])
        for size in (1, 4, 16, 32):
            started = time.perf_counter()
            rows = []
            for start in range(0, len(texts), size):
                batch = [cut(tokenizer.encode(t).ids, embedder.max_tokens) for t in texts[start : start + size]]
                width = max(map(len, batch))
                ids = np.array([b + [0] * (width - len(b)) for b in batch], dtype=np.int64)
                mask = (np.arange(width)[None] < np.array([len(b) for b in batch])[:, None]).astype(np.int64)
                hidden = encoder.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                                     "token_type_ids": np.zeros_like(ids),
                                                     "position_ids": np.broadcast_to(np.arange(width), ids.shape).copy()})[0]
                pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
                rows.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
            seconds = time.perf_counter() - started
            cosine = (np.vstack(rows) * single).sum(1).min()
            print(f"{embedder.name:<22} batch {size:>2}: {len(texts) / seconds:6.1f} chunks/s, "
                  f"lowest cosine to one-text-per-call {cosine:.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_SET)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--batch-sizes", action="store_true", help="time ONNX with padded batches of 1 to 32 texts")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # the child process of one speed measurement
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.dataset)))
        return
    if args.batch_sizes:
        batch_sizes(args.dataset)
        return
    variants = args.variants.split(",")
    for variant in variants:
        model_size_mb(variant)  # export/quantise now, outside the timings
    speed: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            speed[variant].append(run_json([__file__, str(args.dataset), "--measure", variant], variant))
    scores: dict[str, dict[str, float]] = {}
    if not args.skip_quality:
        with tempfile.TemporaryDirectory() as tmp:
            halves = (Path(tmp) / "half-a", Path(tmp) / "half-b")
            subprocess.run([sys.executable, str(ROOT / "scripts" / "split_dataset.py"), str(args.dataset),
                            *map(str, halves)], check=True, capture_output=True)
            scores = {variant: quality(variant, args.dataset, halves) for variant in variants}
    print(f"{args.dataset.name}: {len(dataset_texts(args.dataset)) * CHUNKS_REPEAT} chunks embedded per measurement,"
          f" median of {args.rounds} interleaved rounds")
    print("| variant | chunks/s | load s | peak RSS MB | model MB | hit@1 | hit@5 | out-of-corpus refused (B / A) "
          "| in-corpus refused (B / A) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for variant in variants:
        runs = speed[variant]
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        s = scores.get(variant)
        quality_cells = (f"{s['hit@1']:.3f} | {s['hit@5']:.3f} | {s['out_refused_b']:.1%} / {s['out_refused_a']:.1%} | "
                         f"{s['in_refused_b']:.1%} / {s['in_refused_a']:.1%}") if s else "- | - | - | -"
        print(f"| {VARIANTS[variant]} | {med['chunks_per_second']:.1f} | {med['load_seconds']:.1f} | "
              f"{med['peak_rss_mb']:.0f} | {model_size_mb(variant):.1f} | {quality_cells} |")
    for variant in variants:
        rounds = ", ".join(f"{r['chunks_per_second']:.1f}" for r in speed[variant])
        print(f"  {variant} chunks/s by round: {rounds}")


if __name__ == "__main__":
    main()
