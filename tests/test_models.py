"""The default chat model's file: assembled from its 22 PyPI parts, checked against the pinned SHA-256, and its
GGUF header read (what docs/answers.md quotes)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from rag.llm.models import QWEN, SMOLLM2, ModelFileError, assemble, check_header, model_path, read_header


def test_the_parts_assemble_into_the_pinned_file(tmp_path: Path) -> None:
    """The real parts, installed by `make setup`: about 1.1 GB is written and hashed (a few seconds)."""
    path = assemble(QWEN, tmp_path)
    assert path == tmp_path / QWEN.file_name and path.stat().st_size == QWEN.size == 1_117_320_768
    assert [p.name for p in tmp_path.iterdir()] == [QWEN.file_name], "no partial file left behind"
    header = read_header(path)
    assert header["magic"] == "GGUF" and header["version"] == 3
    assert header["general.architecture"] == "qwen2"
    assert header["general.name"] == "Qwen2.5 Coder 1.5B Instruct GGUF"
    assert "general.license" not in header, "docs/answers.md says the parts name no licence: still true?"
    assert "<|im_start|>" in str(header["tokenizer.chat_template"]), "ChatML"
    assert model_path(QWEN, tmp_path) == path, "an assembled file is used as it is"


def _fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: list[bytes]) -> None:
    """Small stand-in part packages (the real parts are 1.1 GB; these test what happens when one is wrong)."""
    for n, data in enumerate(chunks, start=1):
        package = tmp_path / "site" / f"fakepart{n}"
        package.mkdir(parents=True)
        (package / "part.bin").write_bytes(data)
        (package / "__init__.py").write_text(
            "import os\ndef get_part_path():\n    return os.path.join(os.path.dirname(__file__), 'part.bin')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for n in range(1, len(chunks) + 1):
        sys.modules.pop(f"fakepart{n}", None)


def test_parts_that_do_not_match_the_pinned_hash_leave_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = SMOLLM2  # a genuine GGUF to cut into parts
    data = model_path(real).read_bytes()
    _fake_parts(tmp_path, monkeypatch, [data[:1000], data[1000:]])
    import hashlib

    spec = dataclasses.replace(QWEN, name="fake", file_name="fake.gguf", parts_package="fakepart", parts=2,
                               size=len(data), sha256=hashlib.sha256(data).hexdigest())
    out = tmp_path / "models"
    assert check_header(assemble(spec, out))["general.architecture"] == "llama"

    (out / "fake.gguf").unlink()
    (tmp_path / "site" / "fakepart2" / "part.bin").write_bytes(data[1000:-1] + b"x")  # one byte changed
    with pytest.raises(ModelFileError, match=r"fakepart1 … fakepart2\) assemble to .* not the pinned"):
        assemble(spec, out)
    assert list(out.iterdir()) == [], "nothing half-written is left"


def test_a_missing_part_names_the_package_to_install(tmp_path: Path) -> None:
    spec = dataclasses.replace(QWEN, parts_package="no_such_part_package_", parts=2)
    with pytest.raises(ModelFileError, match="needs the package no-such-part-package-1.*make setup"):
        assemble(spec, tmp_path)


def test_a_file_that_is_not_gguf_is_named(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"<html>not a model</html>")
    with pytest.raises(ModelFileError, match=r"model.gguf is not a GGUF file"):
        read_header(bogus)
