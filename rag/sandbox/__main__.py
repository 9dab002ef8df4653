"""``python -m rag.sandbox [--timeout S] [--memory MB] [--max-output N]``: run a program from stdin in the sandbox.

Prints ``{"ok": bool, "stdout": str, "error": str|null}`` (plus ``"missing_layers"`` when the OS refused some of
the sandbox's layers); the exit status is 0 whether or not the program succeeded, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys

from rag.sandbox.runner import run_program


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rag.sandbox",
        description="Run a Python program from stdin in the sandbox and print a JSON verdict.",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="wall-clock seconds (default 5)")
    parser.add_argument("--memory", type=int, default=256, help="memory budget in MB (default 256)")
    parser.add_argument("--max-output", type=int, default=10_000, help="output cap in characters")
    parser.add_argument("--require-os-layers", action="store_true",
                        help="refuse to run when the OS cannot apply its namespaces, mounts or uid drop")
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.memory <= 0 or args.max_output < 0:
        parser.error("--timeout and --memory must be positive, --max-output at least 0")
    code = sys.stdin.read()
    result = run_program(code, timeout_s=args.timeout, memory_mb=args.memory, max_output=args.max_output,
                         require_os_layers=args.require_os_layers)
    print(json.dumps(result.to_dict()))  # ASCII: safe for any terminal/encoding
    return 0


if __name__ == "__main__":
    sys.exit(main())
