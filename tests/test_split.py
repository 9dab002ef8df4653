"""Chunks are sized in the embedding model's word pieces and point back at their exact place in the text."""

from __future__ import annotations

import pytest

from ingest.loaders import Record, load_document
from ingest.split import Splitter
from rag.index.embedder import Embedder, OnnxEmbedder
from tests.conftest import ROOT, XQUAD_DOCS


@pytest.fixture(scope="module")
def tokens() -> Embedder:
    return OnnxEmbedder()  # only its tokenizer is used here; the model is never loaded


def test_no_chunk_exceeds_the_model_limit_even_without_spaces(tokens: Embedder) -> None:
    splitter = Splitter(tokens.count_tokens, chunk_tokens=254, overlap=0, max_tokens=tokens.max_tokens)
    text = "東京都の人口は多い" * 400 + " " + "1,2;3" * 400  # no spaces or sentence ends to split at
    chunks = splitter.split([Record(text=text)])
    assert len(chunks) > 2
    assert max(c.n_tokens for c in chunks) <= tokens.max_tokens == 254
    assert all(tokens.count_tokens(c.text) == c.n_tokens for c in chunks)


def test_offsets_pages_and_sections_are_kept(tokens: Embedder) -> None:
    splitter = Splitter(tokens.count_tokens, chunk_tokens=64, overlap=16, max_tokens=tokens.max_tokens)
    page_text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(60))
    chunks = splitter.split([Record(text=page_text, page=3, section="Topics", offset=0)])
    assert len(chunks) > 3
    for chunk in chunks:
        assert page_text[chunk.start : chunk.end] == chunk.text
        assert chunk.page == 3 and chunk.section == "Topics" and chunk.n_tokens <= 64
    assert chunks[0].end > chunks[1].start, "consecutive chunks overlap"


def test_real_corpus_fits_the_model(tokens: Embedder) -> None:
    """Real documents (public articles and the demo corpus): with the default size no chunk is truncated."""
    from rag.settings import Settings

    settings = Settings()
    splitter = Splitter(
        tokens.count_tokens, chunk_tokens=settings.chunk_tokens, overlap=settings.chunk_overlap,
        max_tokens=tokens.max_tokens,
    )
    folders = [XQUAD_DOCS, ROOT / "data" / "sample"]
    docs = [p for f in folders for p in sorted(f.iterdir()) if p.suffix in (".md", ".pdf", ".txt") and p.stem != "README"]
    sizes = [c.n_tokens for path in docs for c in splitter.split(load_document(path).records)]
    assert len(docs) == 8 and len(sizes) > 20
    assert max(sizes) <= settings.chunk_tokens


def test_bad_sizes_are_refused(tokens: Embedder) -> None:
    with pytest.raises(ValueError, match="exceeds the embedding model's limit"):
        Splitter(tokens.count_tokens, chunk_tokens=400, overlap=0, max_tokens=254)
    with pytest.raises(ValueError, match="overlap"):
        Splitter(tokens.count_tokens, chunk_tokens=64, overlap=64, max_tokens=254)
