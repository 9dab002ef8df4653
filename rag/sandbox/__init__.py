"""The sandbox that runs the agent's small Python programs (PAL): ``runner`` starts ``child`` in a locked-down
interpreter and reads its verdict; ``python -m rag.sandbox`` runs a program from stdin."""

from rag.sandbox.runner import SandboxResult, run_program

__all__ = ["SandboxResult", "run_program"]
