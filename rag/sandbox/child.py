"""Child side of the PAL sandbox: the code that actually runs an untrusted program.

This file is executed as a *script* by :mod:`rag.sandbox`::

    python -I -S -B rag/sandbox/child.py      (empty env, cwd = empty temp dir)

It reads one JSON request on stdin (``code``, ``timeout_s``, ``memory_mb``,
``max_output``, ``language_guards``, ``audit_guard``), locks itself down and then
runs the program.  Exactly one JSON line ``{"ok", "stdout", "error"}`` is written
to file descriptor 1, then the process leaves with ``os._exit(0)`` (no interpreter
shutdown, so no user ``__del__``/atexit code runs after the verdict).

It only uses the standard library and never imports anything from ``rag`` (with
``-I`` the package is not even on ``sys.path``).  The parent imports this module
only for its constants; nothing happens at import time.

Layers, from the outside in (each one exists because the others can have holes):

1. **Process isolation** (parent): a separate interpreter started with ``-I -S -B``
   (no env vars, no site-packages, no user site, no ``.pyc`` writes), an empty
   environment, cwd in an empty temp dir, its own session so the whole group can
   be killed, and a wall-clock deadline enforced by the parent.
2. **OS level** (:func:`_os_hardening`, :func:`_apply_os_limits`), the kernel's
   backstop that holds even if everything in Python were bypassed:
   ``RLIMIT_CPU`` (loops inside C code, where no signal handler runs),
   ``RLIMIT_AS`` (memory bombs end in ``MemoryError``), ``RLIMIT_FSIZE=0`` (no
   file content), ``RLIMIT_NOFILE`` (no new descriptors), ``RLIMIT_NPROC=0`` (no
   fork, no threads), ``RLIMIT_CORE=0``.  The kernel ignores ``RLIMIT_NPROC``
   and file permissions for root, so a root child first enters new mount and
   network namespaces, remounts every mount point read-only *inside its own
   namespace* (made private first, so the host is untouched), and then drops to
   an otherwise unused uid (:data:`SANDBOX_UID_BASE` + pid).  A non-root child
   tries the same with a user namespace.  The network namespace has only a
   down loopback.  ``PR_SET_NO_NEW_PRIVS`` and ``PR_SET_PDEATHSIG`` (die with
   the parent) are set too.  All of this is best effort - it needs kernel
   support a container may withhold - and the other layers do not rely on it.
   A ``SIGALRM`` timer ends the program at the deadline while keeping the
   output printed so far.
3. **Audit hook** (:func:`_install_audit_hook`): CPython raises audit events for
   every dangerous primitive (``open``, ``os.system``, ``os.fork``,
   ``os.posix_spawn``, ``subprocess.Popen``, ``socket.*``, ``ctypes.*``,
   ``import``, ``compile``/``exec``, reads of ``gi_frame``/``tb_frame``/
   ``__code__``...).  Once the user program starts, the hook is *default deny*:
   only a short list of harmless events passes, a few are allowed when the
   immediate caller is trusted code (tiny runner helpers,
   ``collections.namedtuple``), and anything else stops the program at once.
   Every *new* import is refused too, so the allowed modules and their lazy
   helpers are imported before the program starts.  This layer holds even if a
   language-level escape hands the program a real module or builtin (tests run
   it with the language guards switched off).
4. **Language guards** (:func:`check_program` and the runtime builtins): an AST
   check before running (imports only from the allow-list; no attribute whose
   name starts with ``_`` except ``__init__``/``__name__``/``__qualname__``/
   ``__doc__``; no frame/code attributes such as ``gi_frame`` or ``f_globals``;
   no dunder names such as ``__builtins__``; the same attribute rules for a class
   pattern's keywords, and positional class sub-patterns only on builtin types,
   since a class names their attributes at run time), restricted builtins (``open``,
   ``eval``, ``exec``, ``compile``, ``input``, ``globals``, ``vars``... are stubs
   that stop the program with a clear message), a
   guarded ``__import__`` that hands out *proxy modules* (public, non-module
   attributes only, so ``re.enum.sys`` does not exist), and ``getattr``/
   ``hasattr``/``setattr``/``delattr`` wrappers applying the same name rules at
   run time (``getattr((), '__cl' + 'ass__')`` is caught here).
5. **Output cap**: ``print``/``sys.stdout``/``sys.stderr`` go to an in-memory
   buffer; at ``max_output`` characters the program is stopped and the truncated
   text is returned.

Policy violations found at run time are final: the hook or guard writes the
verdict and calls ``os._exit`` so the program cannot catch and ignore them.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import resource
import signal
import string
import sys
import types
from typing import Any, Callable, NoReturn

ALLOWED_MODULES: tuple[str, ...] = (
    "collections",
    "collections.abc",
    "datetime",
    "decimal",
    "fractions",
    "itertools",
    "math",
    "re",
    "statistics",
)
"""Modules a program may import (top-level names plus ``collections.abc``)."""

ALLOWED_LIST_TEXT = ", ".join(m for m in ALLOWED_MODULES if "." not in m)

# Loaded before lock-down because allowed modules import them lazily inside functions
# (datetime.strptime -> _strptime -> locale/calendar, Counter.most_common -> heapq).
# After lock-down every *new* import is refused by the audit hook.
_SUPPORT_MODULES: tuple[str, ...] = (
    "_strptime", "locale", "calendar", "heapq", "warnings",
    # codecs looked up by name in str.encode/bytes.decode
    "encodings.ascii", "encodings.latin_1", "encodings.cp1252", "encodings.utf_16",
    "encodings.utf_32", "encodings.utf_8_sig",
)

_C_INTERNAL_IMPORTS = frozenset({"_strptime", "time"})
"""Imported by C code of allowed modules at call time through ``__import__`` (e.g.
``datetime.strptime``).  The AST check guarantees import *statements* only name
allowed modules, so these names reach the guarded importer only from that C code."""

SAFE_DUNDER_ATTRS = frozenset({"__init__", "__name__", "__qualname__", "__doc__"})
"""Underscore attributes that are harmless (strings, or a bound ``__init__``)."""

SAFE_DUNDER_NAMES = frozenset({"__name__"})
"""Dunder *variables* a program may use (``if __name__ == "__main__":``)."""

SAFE_DUNDER_METHODS = frozenset(
    {
        "__init__", "__post_init__", "__repr__", "__str__", "__hash__", "__bool__", "__len__", "__iter__",
        "__next__", "__contains__", "__getitem__", "__call__",
        "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
        "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
        "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__", "__neg__", "__pos__",
        "__abs__",
    }
)
"""Dunder methods a program may *define* in its classes. Hooks that change how attributes are looked up or how
classes are built (``__getattr__``, ``__getattribute__``, ``__init_subclass__``, ``__set_name__``, ``__format__``,
``__del__``...) are not among them."""

FORMAT_METHODS = frozenset({"format", "format_map"})
"""``str.format`` reads attributes and items named inside its template (``'{0.__globals__}'.format(f)``), past
every attribute rule: allowed only on a string literal whose fields the AST check has read, never by name at run
time. f-strings are ordinary expressions and go through the same checks as the rest of the program."""

MATCH_SELF_TYPES = frozenset(
    {"bool", "bytearray", "bytes", "dict", "float", "frozenset", "int", "list", "set", "str", "tuple"}
)
"""Builtin classes whose one positional class sub-pattern is the subject itself (``case int(n)``). Any other class
names at run time, in ``__match_args__``, the attributes its positional sub-patterns read, and a class built with
``type(name, bases, namespace)`` can name any (``__globals__``, ``format``): positional sub-patterns are allowed
only on these, bound to the real builtins (:data:`SANDBOX_TYPES_NAME`) whatever the program named ``int``."""

SANDBOX_TYPES_NAME = "__sandbox_types__"
"""Builtin holding the real :data:`MATCH_SELF_TYPES`; a dunder name, so a program cannot name or rebind it."""

FORBIDDEN_ATTRS = frozenset(
    {
        # frames and code reachable from generators, coroutines, tracebacks
        "gi_frame", "gi_code", "gi_yieldfrom",
        "cr_frame", "cr_code", "cr_await", "cr_origin",
        "ag_frame", "ag_code", "ag_await",
        "f_back", "f_builtins", "f_code", "f_globals", "f_locals", "f_trace",
        "tb_frame", "tb_next",
        "co_code", "func_globals", "func_code",
    }
)
"""Public-looking attributes that lead to frames, globals or code objects."""

USER_FILENAME = "<program>"
MAX_ERROR_CHARS = 2_000
"""Error messages embed exception text, which the program controls: keep it short."""

_SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytearray", "bytes", "callable",
    "chr", "classmethod", "complex", "dict", "divmod", "enumerate", "filter", "float",
    "format", "frozenset", "hash", "hex", "id", "int", "isinstance", "issubclass",
    "iter", "len", "list", "map", "max", "min", "next", "object", "oct", "ord", "pow",
    "print", "property", "range", "repr", "reversed", "round", "set", "slice", "sorted",
    "staticmethod", "str", "sum", "super", "tuple", "type", "zip", "dir",
    "Ellipsis", "NotImplemented", "__build_class__",
)

# Builtins replaced by a stub that stops the program with a clear message.
_REFUSED_BUILTINS = {
    "open": "no file access",
    "eval": "no dynamic code",
    "exec": "no dynamic code",
    "compile": "no dynamic code",
    "input": "no input is available",
    "breakpoint": "no debugger",
    "help": "no interactive help",
    "globals": "no namespace access",
    "locals": "no namespace access",
    "vars": "no namespace access",
    "memoryview": "no raw memory access",
}

# Audit events that are always fine while the program runs.
_HARMLESS_EVENTS = frozenset({"builtins.id", "time.sleep"})
# Events allowed only when the immediate caller is trusted code (see ``trusted`` in main).
_TRUSTED_CALLER_EVENTS = frozenset(
    {"exec", "compile", "sys._getframe", "object.__getattr__", "object.__setattr__",
     "object.__delattr__"}
)


def attr_denied(name: str) -> bool:
    """True if attribute *name* may not be read or written by a program."""
    if name in SAFE_DUNDER_ATTRS:
        return False
    return name.startswith("_") or name in FORBIDDEN_ATTRS


def format_template_problem(template: str) -> str | None:
    """Why a ``str.format`` template may not be used, or None: fields may name positions and keywords and index
    them (``{0[1]}``, ``{row[name]}``), but never read an attribute (``{0.real}``) or an underscore key."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"bad format string ({exc})"
    for _, field, spec, _ in fields:
        if field is None:
            continue
        if "." in field:
            return "str.format templates may not read attributes ({x.attr}); use an f-string"
        if any(part.startswith("_") for part in re.split(r"[\[\]]", field) if part):
            return "str.format templates may not use names starting with '_'"
        nested = format_template_problem(spec) if spec else None
        if nested:
            return nested
    return None


def import_denied_message(name: str) -> str:
    return f"import of {name!r} is not allowed (allowed: {ALLOWED_LIST_TEXT})"


# --------------------------------------------------------------------------- AST check


class _Checker(ast.NodeVisitor):
    """Static check of the program; the runtime guards repeat what can be dodged."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.line: int | None = None
        self.in_class_body = False  # a class body may look names up in a mapping its metaclass chose

    def _fail(self, node: ast.AST, message: str) -> None:
        if self.error is None:
            self.error = message
            self.line = getattr(node, "lineno", None)

    def _name(self, node: ast.AST, name: str) -> None:
        if name.startswith("__") and name not in SAFE_DUNDER_NAMES:
            self._fail(node, f"access to {name!r} is not allowed")

    def _attribute(self, node: ast.AST, name: str, receiver: ast.expr | None) -> None:
        """The one rule for an attribute the program names: ``receiver.name``, and ``case C(name=p)`` (*receiver*
        None: the match subject, never a literal)."""
        if attr_denied(name):
            self._fail(node, f"access to {name!r} is not allowed")
        elif name in FORMAT_METHODS:
            if not (isinstance(receiver, ast.Constant) and isinstance(receiver.value, str)):
                self._fail(node, f".{name}() is allowed only on a string literal; use an f-string")
            else:
                problem = format_template_problem(receiver.value)
                if problem:
                    self._fail(node, problem)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)  # inner part first: report ``().__class__`` before ``.__mro__``
        self._attribute(node, node.attr, node.value)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        """Names a program defines: functions, classes and their parameters follow the variable rules; a class
        may define the ordinary dunder methods (``SAFE_DUNDER_METHODS``) and nothing that hooks lookups."""
        if not (node.name in SAFE_DUNDER_METHODS and not isinstance(node, ast.ClassDef)):
            self._name(node, node.name)
        outer, self.in_class_body = self.in_class_body, isinstance(node, ast.ClassDef)
        try:
            self.generic_visit(node)
        finally:
            self.in_class_body = outer

    visit_AsyncFunctionDef = visit_ClassDef = visit_FunctionDef

    def visit_arg(self, node: ast.arg) -> None:
        self._name(node, node.arg)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        """``dict(__x=1)`` is harmless, but ``type('C', (), {}, __init_subclass__=...)``-style hooks are not."""
        if node.arg is not None:
            self._name(node, node.arg)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self._name(node, node.id)

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        for name in node.names:
            self._name(node, name)

    visit_Nonlocal = visit_Global

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in ALLOWED_MODULES:
                self._fail(node, import_denied_message(alias.name))
            if alias.asname:
                self._name(node, alias.asname)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or module not in ALLOWED_MODULES:
            self._fail(node, import_denied_message("." * node.level + module))
        for alias in node.names:
            if alias.name != "*" and attr_denied(alias.name):
                self._fail(node, f"access to {alias.name!r} is not allowed")
            if alias.asname:
                self._name(node, alias.asname)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        """``case C(name=p)`` reads ``subject.name``; ``case C(p)`` reads the attribute ``C.__match_args__`` names."""
        for attr in node.kwd_attrs:
            self._attribute(node, attr, None)
        if node.patterns:
            if not (isinstance(node.cls, ast.Name) and node.cls.id in MATCH_SELF_TYPES):
                self._fail(node, "positional sub-patterns are allowed only on builtin types (case int(n)): "
                                 "use keywords (case Point(x=a, y=b))")
            elif self.in_class_body:
                self._fail(node, "positional class sub-patterns are not allowed directly in a class body")
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs | ast.MatchStar | ast.ExceptHandler) -> None:
        """Nodes that bind an optional ``name``: ``case x``, ``case [*rest]``, ``except E as e``."""
        if node.name:
            self._name(node, node.name)
        self.generic_visit(node)

    visit_MatchStar = visit_ExceptHandler = visit_MatchAs

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self._name(node, node.rest)
        self.generic_visit(node)


class _BindBuiltinClassPatterns(ast.NodeTransformer):
    """``case int(n)`` -> ``case __sandbox_types__.int(n)``: positional sub-patterns (only on
    :data:`MATCH_SELF_TYPES` after the check) meet the real builtin, never a class the program bound to ``int``."""

    def visit_MatchClass(self, node: ast.MatchClass) -> ast.MatchClass:
        self.generic_visit(node)
        cls = node.cls
        if node.patterns and isinstance(cls, ast.Name) and cls.id in MATCH_SELF_TYPES:
            root = ast.copy_location(ast.Name(SANDBOX_TYPES_NAME, ast.Load()), cls)
            node.cls = ast.copy_location(ast.Attribute(root, cls.id, ast.Load()), cls)
        return node


def check_program(tree: ast.AST) -> tuple[str, int | None] | None:
    """Return ``(message, line)`` for the first rule the program breaks, else None."""
    checker = _Checker()
    checker.visit(tree)
    if checker.error is None:
        return None
    return checker.error, checker.line


# --------------------------------------------------------------------------- runner state


class _State:
    """Everything the verdict needs; reachable only from runner code, not the program."""

    def __init__(self, max_output: int) -> None:
        self.max_output = max_output
        self.chunks: list[str] = []
        self.size = 0
        self.finished = False
        self.missing_layers: list[str] = []  # OS layers the kernel refused (reported in the verdict)


_state = _State(10_000)


def _finish(ok: bool, error: str | None) -> NoReturn:
    """Write the single verdict line and leave immediately (uncatchable)."""
    st = _state
    if not st.finished:
        st.finished = True
        signal.setitimer(signal.ITIMER_REAL, 0)  # no alarm in the middle of the write
        if error is not None and len(error) > MAX_ERROR_CHARS:
            error = error[:MAX_ERROR_CHARS] + " ... (message truncated)"
        line = json.dumps({"ok": ok, "stdout": "".join(st.chunks), "error": error,
                           "missing_layers": st.missing_layers})
        data = (line + "\n").encode("utf-8", "surrogatepass")
        while data:
            try:
                written = os.write(1, data)  # the verdict goes to fd 1; the program's prints are captured
            except InterruptedError:
                continue
            except OSError:
                break
            if written <= 0:
                break
            data = data[written:]
    os._exit(0)


class _Capture:
    """Replacement for sys.stdout/sys.stderr: keeps text in memory up to the cap."""

    encoding = "utf-8"
    errors = "strict"

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        text = str.__str__(text)  # a str subclass could lie about its length
        st = _state
        room = st.max_output - st.size
        if len(text) > room:
            if room > 0:
                st.chunks.append(text[:room])
                st.size += room
            _finish(False, f"output truncated at {st.max_output} characters")
        st.chunks.append(text)
        st.size += len(text)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def _violation(message: str, line: int | None = None) -> NoReturn:
    if line is None:
        line = _innermost_user_line()
    if line is not None:
        message = f"{message} (line {line})"
    _finish(False, message)


def _innermost_user_line() -> int | None:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == USER_FILENAME:
            return frame.f_lineno
        frame = frame.f_back
    return None


# --------------------------------------------------------------------------- guarded builtins


def _make_proxy(name: str, cache: dict[str, types.ModuleType]) -> types.ModuleType:
    """A stand-in for module *name* holding only its public, non-module attributes.

    The real module objects keep references to ``sys``, ``os`` and friends (for
    example ``re.enum.sys``); a proxy drops every module-valued attribute except
    allowed submodules, so attribute chains cannot wander out of the allow-list.
    """
    if name in cache:
        return cache[name]
    real = sys.modules[name]
    proxy = types.ModuleType(name, getattr(real, "__doc__", None))
    cache[name] = proxy
    for attr, value in vars(real).items():
        if attr.startswith("_"):
            continue
        if type(value).__name__ == "PyCapsule":  # e.g. datetime.datetime_CAPI: raw C pointers
            continue
        if isinstance(value, types.ModuleType):
            full = f"{name}.{attr}"
            if value.__name__ == full and full in ALLOWED_MODULES:
                setattr(proxy, attr, _make_proxy(full, cache))
            elif value.__name__ in ALLOWED_MODULES and "." not in value.__name__:
                setattr(proxy, attr, _make_proxy(value.__name__, cache))
            continue
        setattr(proxy, attr, value)
    return proxy


def _build_builtins() -> dict[str, Any]:
    proxies: dict[str, types.ModuleType] = {}
    for mod in ALLOWED_MODULES:
        _make_proxy(mod, proxies)

    def guarded_import(name: str, globals: Any = None, locals: Any = None,
                       fromlist: Any = (), level: int = 0) -> types.ModuleType:
        """``__import__`` honouring the allow-list; returns proxies, never real modules
        (except the already loaded helpers of :data:`_C_INTERNAL_IMPORTS`)."""
        if type(name) is not str:
            _violation("import with a computed module name is not allowed")
        if level == 0 and name in _C_INTERNAL_IMPORTS and name in sys.modules:
            return sys.modules[name]
        if level != 0 or name not in ALLOWED_MODULES:
            _violation(import_denied_message(name))
        for item in fromlist or ():
            if type(item) is not str or (item != "*" and attr_denied(item)):
                _violation(f"access to {item!r} is not allowed")
        if fromlist:
            return proxies[name]
        return proxies[name.partition(".")[0]]

    def _plain(name: Any) -> str:
        """The attribute name as an exact ``str``, checked against the name rules.

        A ``str`` subclass could override ``startswith``/``__eq__``/``__hash__`` to
        slip past the check while ``getattr`` still uses its real characters, so
        the check and the lookup both use a plain copy.
        """
        if not isinstance(name, str):
            raise TypeError(f"attribute name must be string, not {type(name).__name__!r}")
        plain = str.__str__(name)
        if attr_denied(plain):
            _violation(f"access to {plain!r} is not allowed")
        if plain in FORMAT_METHODS:  # a template built at run time was never checked
            _violation(f"{plain!r} by name is not allowed; use an f-string")
        return plain

    _missing = object()

    def safe_getattr(obj: Any, name: str, default: Any = _missing) -> Any:
        plain = _plain(name)
        if default is _missing:
            return getattr(obj, plain)
        return getattr(obj, plain, default)

    def safe_hasattr(obj: Any, name: str) -> bool:
        return hasattr(obj, _plain(name))

    def safe_setattr(obj: Any, name: str, value: Any) -> None:
        setattr(obj, _plain(name), value)

    def safe_delattr(obj: Any, name: str) -> None:
        delattr(obj, _plain(name))

    def refused(name: str, why: str) -> Callable[..., NoReturn]:
        def stub(*args: Any, **kwargs: Any) -> NoReturn:
            _violation(f"{name}() is not allowed in the sandbox ({why})")

        stub.__name__ = name
        return stub

    def leave(code: Any = None) -> NoReturn:
        raise SystemExit(code)

    table: dict[str, Any] = {
        name: refused(name, why) for name, why in _REFUSED_BUILTINS.items()
    }
    table["exit"] = table["quit"] = leave
    for key in _SAFE_BUILTIN_NAMES:
        table[key] = getattr(builtins, key)
    for key, value in vars(builtins).items():
        if isinstance(value, type) and issubclass(value, BaseException):
            table[key] = value
    table[SANDBOX_TYPES_NAME] = types.SimpleNamespace(**{key: getattr(builtins, key) for key in MATCH_SELF_TYPES})
    table.update(
        __import__=guarded_import,
        getattr=safe_getattr,
        hasattr=safe_hasattr,
        setattr=safe_setattr,
        delattr=safe_delattr,
    )
    return table


# --------------------------------------------------------------------------- audit hook


def _describe_event(event: str, args: tuple[Any, ...]) -> str:
    """Human wording for a refused audit event."""
    if event == "import":
        return import_denied_message(str(args[0]) if args else "?")
    if event == "open":
        return f"file access is not allowed (open {args[0]!r})" if args else "file access is not allowed"
    if event in ("object.__getattr__", "object.__setattr__", "object.__delattr__"):
        return f"access to {args[1]!r} is not allowed" if len(args) > 1 else "attribute access is not allowed"
    if event in ("compile", "exec"):
        return "compiling or executing code at run time is not allowed"
    if event.startswith("socket.") or event.startswith(("urllib.", "http.", "ftplib.", "smtplib.")):
        return f"network access is not allowed ({event})"
    if event in ("os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.posix_spawnp",
                 "os.spawn", "os.exec", "subprocess.Popen", "os.startfile", "pty.spawn"):
        return f"starting processes is not allowed ({event})"
    if event.startswith("ctypes."):
        return f"native code access is not allowed ({event})"
    return f"operation {event!r} is not allowed in the sandbox"


def _install_audit_hook(trusted_codes: frozenset[types.CodeType], user_code: types.CodeType) -> None:
    """Default-deny audit hook that arms itself when *user_code* starts executing.

    Audit hooks cannot be removed once added.  Everything the hook *decides*
    with is bound here as closure state (no module globals, no flag elsewhere),
    so a program that somehow reached this module still could not disarm it; if
    the verdict writer were tampered with, the final ``raise`` still blocks the
    operation.
    """
    harmless = _HARMLESS_EVENTS
    conditional = _TRUSTED_CALLER_EVENTS
    safe_dunders = SAFE_DUNDER_ATTRS
    forbidden = FORBIDDEN_ATTRS
    attr_events = frozenset({"object.__setattr__", "object.__delattr__"})
    getframe = sys._getframe
    describe = _describe_event
    stop = _violation
    armed = False
    busy = False

    def hook(event: str, args: tuple[Any, ...]) -> None:
        nonlocal armed, busy
        if busy:  # events raised by the hook's own sys._getframe call
            return
        if not armed:
            if event == "exec" and args and args[0] is user_code:
                armed = True
            return
        if event in harmless:
            return
        busy = True
        try:
            caller = getframe(1)  # frame 0 = this hook, 1 = Python code that raised the event
            if event in conditional and caller.f_code in trusted_codes:
                return
            if event in attr_events and len(args) > 1 and isinstance(args[1], str):
                name = str.__str__(args[1])  # a str subclass cannot fool the checks
                # Setting ordinary attributes on the program's own classes is fine.
                if name in safe_dunders or not (name.startswith("_") or name in forbidden):
                    return
            message = describe(event, args)
        finally:
            busy = False
        stop(message)
        raise PermissionError(message)  # only reached if stop() was subverted

    sys.addaudithook(hook)


# --------------------------------------------------------------------------- OS limits


_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38

SANDBOX_UID_BASE = 2_000_000_000
"""Root drops to ``SANDBOX_UID_BASE + pid % 10**8``: a uid that owns no file and
no other process, so the program can neither write root's files nor signal
another sandbox, and ``RLIMIT_NPROC=0`` is enforced (the kernel exempts root)."""


def _mount_points() -> list[tuple[bytes, str]]:
    """``(mount point, options)`` pairs of this mount namespace, parents first."""
    points: list[tuple[bytes, str]] = []
    with open("/proc/self/mountinfo", "rb") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) > 5:
                # mountinfo escapes blanks and backslashes as octal (\\040 ...)
                point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
                points.append((point, fields[5].decode("ascii", "replace")))
    return points


def _os_hardening(namespaces: bool = True) -> list[str]:
    """Namespaces, read-only mounts, uid drop and prctl flags; best effort.

    Everything here needs kernel support that a container may withhold; the
    audit hook and the language guards do not depend on any of it. Returns the
    layers that could not be applied (the verdict reports them: a weaker sandbox
    is said, never silent).
    """
    missing: list[str] = []
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                               ctypes.c_ulong, ctypes.c_void_p]

        def unshare(flags: int) -> bool:
            return namespaces and libc.unshare(flags) == 0  # namespaces=False: tests play a kernel that refuses

        def read_only_mounts() -> None:
            # Private first, so nothing we do can propagate to the host's mounts;
            # MS_BIND|MS_REMOUNT changes only this namespace's mount flags.
            if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
                missing.append(f"read-only mounts (errno {ctypes.get_errno()})")
                return
            failed = []
            for point, options in _mount_points():
                flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
                opts = options.split(",")
                for name, bit in (("nosuid", _MS_NOSUID), ("nodev", _MS_NODEV), ("noexec", _MS_NOEXEC)):
                    if name in opts:
                        flags |= bit
                if libc.mount(None, point, None, flags, None) != 0 and point in (b"/", b"/tmp", b"/work"):
                    failed.append(point.decode("utf-8", "replace"))
            if failed:
                missing.append(f"read-only mounts ({', '.join(failed)} stayed writable)")

        def drop_uid() -> None:
            uid = SANDBOX_UID_BASE + os.getpid() % 100_000_000
            for candidate in (uid, 65534):
                try:
                    os.setgroups([])
                    os.setgid(candidate)
                    os.setuid(candidate)
                except OSError:
                    continue
                return
            missing.append("unprivileged uid")

        root = os.geteuid() == 0
        if root and unshare(_CLONE_NEWNS | _CLONE_NEWNET):
            read_only_mounts()
            drop_uid()
        else:
            if root:
                drop_uid()
            if unshare(_CLONE_NEWUSER | _CLONE_NEWNS | _CLONE_NEWNET):
                read_only_mounts()
            else:
                missing.append("mount namespace (read-only mounts)")
                if not unshare(_CLONE_NEWNET):
                    missing.append("network namespace")
        # After any uid change (which clears the parent-death signal).
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            missing.append("parent-death signal")
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            missing.append("no_new_privs")
        del libc, ctypes
    except Exception as exc:  # noqa: BLE001 - best effort by design, but reported
        missing.append(f"OS hardening ({type(exc).__name__}: {exc})")
    finally:
        # Make ctypes unreachable: a fresh import of it is refused by the audit hook.
        for name in list(sys.modules):
            if name == "ctypes" or name.startswith("ctypes.") or name == "_ctypes":
                del sys.modules[name]
    return missing


def _apply_os_limits(timeout_s: float, memory_mb: int) -> list[str]:
    """rlimits: the kernel's backstop for what the layers above might miss. Returns those it could not set."""
    missing: list[str] = []

    def limit(which: int, value: int) -> None:
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            try:
                soft, hard = resource.getrlimit(which)
                if hard == resource.RLIM_INFINITY or value <= hard:
                    resource.setrlimit(which, (value, hard))
                    return
            except (ValueError, OSError):
                pass
            missing.append(f"rlimit {which}")

    # Address space = what the interpreter already maps + the program's budget.
    try:
        with open("/proc/self/statm") as fh:
            baseline = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        baseline = 64 * 1024 * 1024
    cpu = int(timeout_s) + 2
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
    limit(resource.RLIMIT_CPU, cpu)
    limit(resource.RLIMIT_AS, baseline + memory_mb * 1024 * 1024)
    limit(resource.RLIMIT_FSIZE, 0)
    limit(resource.RLIMIT_CORE, 0)
    limit(resource.RLIMIT_NPROC, 0)
    limit(resource.RLIMIT_NOFILE, 4)
    limit(resource.RLIMIT_MEMLOCK, 0)
    limit(resource.RLIMIT_MSGQUEUE, 0)
    return missing


# --------------------------------------------------------------------------- main


def _user_line_from_tb(tb: types.TracebackType | None) -> int | None:
    """Innermost traceback line that belongs to the program (trusted: reads tb_frame)."""
    line: int | None = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == USER_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _format_exception(exc: BaseException) -> str:
    """``Type: message (line N)`` with N the innermost line of the program.

    The exception may be of a class the program defined (odd ``__str__``,
    metaclass tricks), so every step is guarded.
    """
    try:
        line = _user_line_from_tb(exc.__traceback__)
        if isinstance(exc, SyntaxError) and exc.filename == USER_FILENAME:
            line = exc.lineno
    except BaseException:
        line = None
    try:
        name = str.__str__(type(exc).__name__)
    except BaseException:
        name = "Exception"
    try:
        text = str(exc.msg) if isinstance(exc, SyntaxError) else str(exc)
        text = str.__str__(text)
    except BaseException:
        text = "<exception text could not be shown>"
    message = f"{name}: {text}" if text else name
    if isinstance(line, int):
        message += f" (line {line})"
    return message


def _exec(code: types.CodeType, user_globals: dict[str, Any]) -> None:
    """The one place that may raise the ``exec`` audit event (trusted)."""
    exec(code, user_globals)


def _run_user_code(code: types.CodeType, user_globals: dict[str, Any], memory_mb: int) -> NoReturn:
    """Execute the program; every outcome ends in :func:`_finish`."""
    try:
        _exec(code, user_globals)
        solution = user_globals.get("solution")
        if _state.size == 0 and callable(solution):
            value = solution()
            if value is not None:
                print(value)
    except SystemExit as exc:
        if exc.code in (None, 0):
            _finish(True, None)
        _finish(False, f"SystemExit: {exc.code}")
    except MemoryError:
        user_globals.clear()  # frees the bomb's data before the verdict is encoded
        _finish(False, f"memory limit of {memory_mb} MB exceeded")
    except BaseException as exc:  # noqa: BLE001 - every program error becomes a verdict
        message = _format_exception(exc)
        del exc
        _finish(False, message)
    _finish(True, None)


def main() -> NoReturn:
    request = json.loads(sys.stdin.buffer.read().decode("utf-8", "surrogatepass"))
    code_text: str = request["code"]
    timeout_s = float(request.get("timeout_s", 5.0))
    memory_mb = int(request.get("memory_mb", 256))
    max_output = int(request.get("max_output", 10_000))
    language_guards = bool(request.get("language_guards", True))
    audit_guard = bool(request.get("audit_guard", True))
    namespaces = bool(request.get("namespaces", True))

    _state.max_output = max_output

    for name in ALLOWED_MODULES + _SUPPORT_MODULES:
        __import__(name)
    import warnings

    warnings.simplefilter("ignore")  # warning display would import linecache lazily

    _state.missing_layers = _os_hardening(namespaces)
    _state.missing_layers += _apply_os_limits(timeout_s, memory_mb)

    try:
        tree = ast.parse(code_text, filename=USER_FILENAME, mode="exec")
        if language_guards:
            problem = check_program(tree)
            if problem is not None:
                message, line = problem
                _finish(False, message + (f" (line {line})" if line else ""))
            tree = _BindBuiltinClassPatterns().visit(tree)
        code = compile(tree, USER_FILENAME, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        _finish(False, _format_exception(exc))

    if language_guards:
        user_builtins: dict[str, Any] = _build_builtins()
    else:
        user_builtins = dict(vars(builtins))
    user_globals: dict[str, Any] = {"__builtins__": user_builtins, "__name__": "__main__"}

    sys.stdout = sys.stderr = _Capture()  # type: ignore[assignment]
    sys.stdin = None  # type: ignore[assignment]

    def on_alarm(signum: int, frame: Any) -> None:
        _finish(False, f"time limit of {timeout_s:g} s exceeded")

    signal.signal(signal.SIGALRM, on_alarm)

    import collections

    # Code allowed to raise exec/compile/_getframe/frame-attribute events: our
    # minimal helpers and namedtuple (it builds __new__ with eval on validated names).
    trusted: set[types.CodeType] = {
        _exec.__code__,
        _user_line_from_tb.__code__,
        _innermost_user_line.__code__,
        collections.namedtuple.__code__,
    }
    if audit_guard:
        _install_audit_hook(frozenset(trusted), code)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    _run_user_code(code, user_globals, memory_mb)


if __name__ == "__main__":
    main()
