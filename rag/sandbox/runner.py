"""Run a small untrusted Python program (PAL style) in a locked-down child process.

Parent side of the sandbox.  :func:`run_program` starts ``rag/sandbox/child.py``
in a fresh interpreter and returns a :class:`SandboxResult`; the child does the
actual lock-down (see the docstring of :mod:`rag.sandbox.child` for every layer).

What this side is responsible for, and why:

* **a separate process** - nothing the program does (crash, memory bomb,
  infinite loop in C code) can touch the host interpreter;
* ``-I -S -B``, ``env={}``, ``close_fds``, cwd in a fresh empty temp dir - the
  child sees no environment variables, no site-packages, no inherited file
  descriptors and no project files, and writes no ``.pyc`` files;
* ``start_new_session`` + ``killpg(SIGKILL)`` - the wall-clock deadline is
  enforced from outside (``timeout_s`` plus a short grace for the child's own
  SIGALRM to report first) and nothing of the child's process group survives;
* bounded reading of the child's pipes - a misbehaving child cannot make the
  host buffer unbounded output.

Conventions for programs (documented for the agent prompt):

* output is whatever the program prints (stdout and stderr, merged);
* if the program prints nothing and defines a callable ``solution()``, it is
  called and its return value (unless ``None``) is printed;
* imports: ``collections``, ``datetime``, ``decimal``, ``fractions``,
  ``itertools``, ``math``, ``re``, ``statistics``;
* no files, network, processes, ``eval``/``exec``, or attributes starting with
  ``_`` (except ``__init__``, ``__name__``, ``__qualname__``, ``__doc__``).

CLI: ``python -m rag.sandbox [--timeout S] [--memory MB] [--max-output N]`` reads
the program on stdin and prints ``{"ok": bool, "stdout": str, "error": str|null}``;
the exit status is 0 whether or not the program succeeded.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

CHILD_SCRIPT = Path(__file__).with_name("child.py")

_GRACE_S = 1.0
"""Extra wall time before the parent kills: lets the child's own timer report first
(with the output printed so far) and covers interpreter start-up."""

_STDERR_CAP = 64 * 1024


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one program run. ``error`` is a sentence for a person, or None."""

    ok: bool
    stdout: str
    error: str | None
    missing_layers: tuple[str, ...] = ()  # OS layers this kernel refused (the other layers still held)

    def to_dict(self) -> dict[str, object]:
        """``{"ok", "stdout", "error"}``, plus ``missing_layers`` when the OS refused some."""
        out = asdict(self)
        if not self.missing_layers:
            del out["missing_layers"]
        else:
            out["missing_layers"] = list(self.missing_layers)
        return out


def run_program(
    code: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 256,
    max_output: int = 10_000,
    require_os_layers: bool = False,
) -> SandboxResult:
    """Run *code* in the sandbox and return what it printed or why it failed.

    ``timeout_s`` bounds wall-clock time, ``memory_mb`` is the address-space budget
    of the program on top of the interpreter's own footprint, ``max_output`` caps
    the captured text (the program is stopped when it is reached).
    Never raises for anything the program does.
    """
    return _run(code, timeout_s=timeout_s, memory_mb=memory_mb, max_output=max_output,
                require_os_layers=require_os_layers)


def _run(
    code: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 256,
    max_output: int = 10_000,
    language_guards: bool = True,
    audit_guard: bool = True,
    namespaces: bool = True,
    require_os_layers: bool = False,
) -> SandboxResult:
    """:func:`run_program` with switches to turn layers off.

    Only tests use the switches, to show that each remaining layer holds on its
    own and that a layer the OS refuses is reported (``namespaces=False`` plays a
    kernel without namespaces); production code must call :func:`run_program`.
    ``require_os_layers`` turns a missing OS layer into a refusal to run.
    """
    if timeout_s <= 0 or memory_mb <= 0 or max_output < 0:
        raise ValueError("timeout_s and memory_mb must be positive, max_output >= 0")
    request = json.dumps(
        {
            "code": code,
            "timeout_s": timeout_s,
            "memory_mb": memory_mb,
            "max_output": max_output,
            "language_guards": language_guards,
            "audit_guard": audit_guard,
            "namespaces": namespaces,
        }
    ).encode("utf-8", "surrogatepass")
    time_error = f"time limit of {timeout_s:g} s exceeded"
    stdout_cap = 12 * max_output + 64 * 1024  # JSON escaping: up to 12 bytes a character

    with tempfile.TemporaryDirectory(prefix="rag-sandbox-") as workdir:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(CHILD_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env={},
            close_fds=True,
            start_new_session=True,
        )
        try:
            out, err, status = _communicate(
                proc, request, time.monotonic() + timeout_s + _GRACE_S, stdout_cap
            )
        finally:
            _kill_group(proc)
            proc.wait()

    if status == "timeout":
        return SandboxResult(False, "", time_error)
    if status == "overflow":
        return SandboxResult(False, "", "the sandbox produced too much output and was stopped")
    result = _parse_verdict(out, err, proc.returncode, time_error, memory_mb)
    if result.missing_layers:
        _warn_once(result.missing_layers)
        if require_os_layers:
            return SandboxResult(False, "", "the sandbox refused to run: this system would not apply "
                                 + "; ".join(result.missing_layers), result.missing_layers)
    return result


_warned: set[tuple[str, ...]] = set()


def _warn_once(missing: tuple[str, ...]) -> None:
    """Say (once per process) that the OS could not apply some layers: the sandbox is weaker, not silently so."""
    if missing not in _warned:
        _warned.add(missing)
        logging.getLogger(__name__).warning(
            "sandbox: the OS did not apply %s; the language guards, audit hook and rlimits still hold",
            "; ".join(missing))


def _communicate(
    proc: subprocess.Popen[bytes], data: bytes, deadline: float, stdout_cap: int
) -> tuple[bytes, bytes, str]:
    """Feed stdin and drain stdout/stderr until EOF, the deadline or a size cap."""
    assert proc.stdin and proc.stdout and proc.stderr
    buffers: dict[int, bytearray] = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    caps = {proc.stdout.fileno(): stdout_cap, proc.stderr.fileno(): _STDERR_CAP}
    stdin_fd = proc.stdin.fileno()
    os.set_blocking(stdin_fd, False)
    view = memoryview(data)
    with selectors.DefaultSelector() as sel:
        sel.register(stdin_fd, selectors.EVENT_WRITE)
        for fd in buffers:
            sel.register(fd, selectors.EVENT_READ)
        status = "done"
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                status = "timeout"
                break
            for key, _ in sel.select(remaining):
                fd = key.fd
                if fd == stdin_fd:
                    try:
                        view = view[os.write(fd, view[:65536]):]
                    except BlockingIOError:
                        continue
                    except OSError:  # child gone (BrokenPipeError) - it will report
                        view = view[len(view):]
                    if not len(view):
                        sel.unregister(fd)
                        proc.stdin.close()
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(fd)
                    continue
                if len(buffers[fd]) + len(chunk) > caps[fd]:
                    if fd == proc.stdout.fileno():
                        status = "overflow"
                        break
                    continue  # excess stderr is dropped
                buffers[fd] += chunk
            if status != "done":
                break
    if not proc.stdin.closed:
        proc.stdin.close()
    if status == "done":
        # Pipes closed; the child exits right after closing them.
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            status = "timeout"
    return bytes(buffers[proc.stdout.fileno()]), bytes(buffers[proc.stderr.fileno()]), status


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's whole process group (it leads its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _parse_verdict(
    out: bytes, err: bytes, returncode: int | None, time_error: str, memory_mb: int
) -> SandboxResult:
    """Turn the child's output (or its manner of death) into a SandboxResult."""
    for line in reversed(out.decode("utf-8", "replace").split("\n")):
        try:
            verdict = json.loads(line)
        except ValueError:
            continue
        if isinstance(verdict, dict) and {"ok", "stdout", "error"} <= verdict.keys():
            missing = verdict.get("missing_layers") or []
            return SandboxResult(bool(verdict["ok"]), str(verdict["stdout"]),
                                 None if verdict["error"] is None else str(verdict["error"]),
                                 tuple(str(m) for m in missing if isinstance(m, str)))
    stderr_text = err.decode("utf-8", "replace").strip()
    if returncode is not None and returncode < 0:
        sig = -returncode
        if sig in (signal.SIGXCPU, signal.SIGKILL, signal.SIGALRM):
            return SandboxResult(False, "", time_error)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return SandboxResult(False, "", f"the sandboxed program crashed (signal {name})")
    if "MemoryError" in stderr_text:
        return SandboxResult(False, "", f"memory limit of {memory_mb} MB exceeded")
    last = stderr_text.splitlines()[-1] if stderr_text else "no output"
    return SandboxResult(False, "", f"the sandbox failed (exit code {returncode}): {last}")
