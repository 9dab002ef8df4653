"""Escape and exhaustion suite for the PAL sandbox (rag.sandbox / rag.sandbox.child).

Every hostile program must end with ok=False and a clear error, quickly, and leave
no process behind.  Layer tests switch the inner layers off (``sandbox._run``) to
show the audit hook and the OS limits hold on their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from rag.sandbox import SandboxResult, run_program
from rag.sandbox import runner as sandbox

REPO = Path(__file__).resolve().parents[1]
ALLOWED = "allowed: collections, datetime, decimal, fractions, itertools, math, re, statistics"


# --------------------------------------------------------------------------- helpers


def _sessions() -> dict[int, int]:
    """pid -> session id of every process we can see."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        found[int(entry)] = int(fields[3])  # state ppid pgrp session
    return found


@pytest.fixture(autouse=True)
def no_stray_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Record each sandbox child; afterwards neither it nor anything in its session lives."""
    pids: list[int] = []
    real_popen = subprocess.Popen

    class RecordingPopen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            pids.append(self.pid)

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    yield pids
    monkeypatch.undo()
    if pids:
        sessions = _sessions()
        for pid in pids:
            leftovers = [p for p, sid in sessions.items() if sid == pid or p == pid]
            assert not leftovers, f"sandbox process(es) {leftovers} still running"


def run(code: str, *, timeout_s: float = 5.0, budget_s: float | None = None, **kwargs: Any) -> SandboxResult:
    """run_program plus a bound on how long it may take."""
    started = time.monotonic()
    result = sandbox._run(code, timeout_s=timeout_s, **kwargs)
    elapsed = time.monotonic() - started
    limit = budget_s if budget_s is not None else timeout_s + 2.5
    assert elapsed < limit, f"took {elapsed:.1f}s (limit {limit}s): {result}"
    return result


def blocked(result: SandboxResult, *fragments: str) -> None:
    assert result.ok is False, result
    assert result.error is not None
    for fragment in fragments:
        assert fragment in result.error, result.error


# --------------------------------------------------------------------------- benign programs


def test_sum_prints_result() -> None:
    result = run_program("print(sum(range(1, 101)))")
    assert result == SandboxResult(ok=True, stdout="5050\n", error=None)


def test_percentages() -> None:
    code = "price = 80\ndiscount = 15\nprint(price * discount / 100)\nprint(f'{3/8:.1%}')"
    assert run_program(code).stdout == "12.0\n37.5%\n"


def test_datetime() -> None:
    code = (
        "from datetime import date, datetime, timedelta\n"
        "print((date(2024, 3, 1) - date(2024, 2, 1)).days)\n"
        "print(datetime.strptime('2024-07-14', '%Y-%m-%d').strftime('%A'))\n"
        "print(date(2024, 1, 31) + timedelta(days=30))\n"
    )
    assert run_program(code) == SandboxResult(True, "29\nSunday\n2024-03-01\n", None)


def test_statistics_fractions_decimal_re() -> None:
    code = (
        "import statistics, fractions, decimal, re, math\n"
        "print(statistics.mean([2, 4, 9]))\n"
        "print(statistics.median([5, 1, 3]), round(statistics.stdev([1, 2, 3, 4]), 4))\n"
        "print(fractions.Fraction(1, 3) + fractions.Fraction(1, 6))\n"
        "print(decimal.Decimal('0.1') * 3)\n"
        "print(re.findall(r'\\d+', 'a1b22c333'))\n"
        "print(math.comb(5, 2), math.isclose(math.sqrt(2) ** 2, 2))\n"
    )
    assert run_program(code).stdout == "5\n3 1.291\n1/2\n0.3\n['1', '22', '333']\n10 True\n"


def test_collections_itertools_namedtuple() -> None:
    code = (
        "from collections import Counter, namedtuple, defaultdict\n"
        "import itertools, collections.abc\n"
        "print(Counter('abracadabra').most_common(2))\n"
        "Point = namedtuple('Point', 'x y')\n"
        "print(Point(1, 2), isinstance([], collections.abc.Sequence))\n"
        "print(list(itertools.combinations('abc', 2)))\n"
        "d = defaultdict(int)\n"
        "d['k'] += 1\n"
        "print(dict(d))\n"
    )
    assert run_program(code).stdout == (
        "[('a', 5), ('b', 2)]\nPoint(x=1, y=2) True\n"
        "[('a', 'b'), ('a', 'c'), ('b', 'c')]\n{'k': 1}\n"
    )


def test_classes_and_main_guard() -> None:
    code = (
        "class Account:\n"
        "    count = 0\n"
        "    def __init__(self, balance):\n"
        "        self.balance = balance\n"
        "        Account.count += 1\n"
        "class Savings(Account):\n"
        "    def __init__(self):\n"
        "        super().__init__(100)\n"
        "def main():\n"
        "    s = Savings()\n"
        "    print(s.balance, Account.count, type(s).__name__)\n"
        "if __name__ == '__main__':\n"
        "    main()\n"
    )
    assert run_program(code) == SandboxResult(True, "100 1 Savings\n", None)


def test_solution_convention() -> None:
    assert run_program("def solution():\n    return 6 * 7").stdout == "42\n"
    # not called when the program printed something itself
    assert run_program("def solution():\n    return 1\nprint('x')").stdout == "x\n"


def test_program_error_has_type_message_and_line() -> None:
    result = run_program("a = 1\nb = 0\nprint(a / b)")
    assert result == SandboxResult(False, "", "ZeroDivisionError: division by zero (line 3)")


def test_output_before_error_is_kept() -> None:
    result = run_program("print('partial')\nraise ValueError('bad input')")
    assert result.stdout == "partial\n"
    assert result.error == "ValueError: bad input (line 2)"


def test_long_exception_message_is_capped() -> None:
    result = run_program("raise ValueError('x' * 10**6)")
    assert result.ok is False and result.error is not None
    assert result.error.startswith("ValueError: xxx")
    assert result.error.endswith("(message truncated)") and len(result.error) < 2100


def test_unusual_text_survives_the_round_trip() -> None:
    result = run_program("print('caf\\u00e9 \\U0001F600 \\ud800 \\x00 end')")
    assert result.stdout == "caf\u00e9 \U0001F600 \ud800 \x00 end\n"


def test_syntax_error() -> None:
    blocked(run_program("print(1 +)"), "SyntaxError", "(line 1)")


# --------------------------------------------------------------------------- escapes


@pytest.mark.parametrize(
    "code, fragments",
    [
        ("import os", ("import of 'os' is not allowed", ALLOWED)),
        ("import subprocess\nsubprocess.run(['id'])", ("import of 'subprocess' is not allowed",)),
        ("from subprocess import Popen", ("import of 'subprocess' is not allowed",)),
        ("import socket", ("import of 'socket' is not allowed",)),
        ("import math, sys", ("import of 'sys' is not allowed",)),
        ("import multiprocessing", ("import of 'multiprocessing' is not allowed",)),
        ("import ctypes", ("import of 'ctypes' is not allowed",)),
        ("from . import x", ("is not allowed",)),
        ("import re\nprint(re.enum.sys)", ("AttributeError",)),
        ("from re import enum", ("ImportError", "enum")),
        ("from collections import _sys", ("access to '_sys' is not allowed",)),
    ],
)
def test_imports_outside_allow_list(code: str, fragments: tuple[str, ...]) -> None:
    blocked(run(code), *fragments)


@pytest.mark.parametrize(
    "code, fragments",
    [
        ("print(open('/etc/passwd').read())", ("open() is not allowed",)),
        ("__import__('os').system('id')", ("access to '__import__' is not allowed",)),
        ("print(__builtins__)", ("access to '__builtins__' is not allowed",)),
        ("__builtins__['open']", ("access to '__builtins__' is not allowed",)),
        ("().__class__.__mro__[1].__subclasses__()", ("access to '__class__' is not allowed",)),
        ("object.__subclasses__()", ("access to '__subclasses__' is not allowed",)),
        ("print.__self__", ("access to '__self__' is not allowed",)),
        ("f = lambda: 0\nf.__globals__", ("access to '__globals__' is not allowed",)),
        ("try:\n    1/0\nexcept Exception as e:\n    e.__traceback__", ("access to '__traceback__'",)),
        ("g = (i for i in [1])\nprint(g.gi_frame.f_back.f_globals)", ("access to 'gi_frame' is not allowed",)),
        ("match ():\n    case object(__class__=c):\n        print(c)", ("access to '__class__' is not allowed",)),
        ("print(f'{().__class__}')", ("access to '__class__' is not allowed",)),
        ("import math as __builtins__", ("access to '__builtins__' is not allowed",)),
        ("eval('1 + 1')", ("eval() is not allowed",)),
        ("exec('import os')", ("exec() is not allowed",)),
        ("compile('1', 'x', 'eval')", ("compile() is not allowed",)),
        ("print(globals())", ("globals() is not allowed",)),
        ("print(vars(object))", ("vars() is not allowed",)),
        ("input()", ("input() is not allowed",)),
    ],
)
def test_static_escapes(code: str, fragments: tuple[str, ...]) -> None:
    blocked(run(code), *fragments)


@pytest.mark.parametrize(
    "code, name",
    [
        ("getattr((), '__cl' + 'ass__')", "__class__"),
        ("c = getattr((), ''.join(['__', 'class', '__']))\nprint(c.mro())", "__class__"),
        ("print(getattr(object, '__sub' + 'classes__')())", "__subclasses__"),
        ("print(hasattr((), '__cl' + 'ass__'))", "__class__"),
        ("f = getattr\nprint(f(print, '__se' + 'lf__'))", "__self__"),
        ("g = (i for i in [1])\nprint(getattr(g, 'gi_' + 'frame'))", "gi_frame"),
        ("class A: pass\nsetattr(A, '__ge' + 'tattr__', print)", "__getattr__"),
        ("import datetime\nprint(getattr(datetime, '_' + 'time'))", "_time"),
        # a str subclass lying about itself must not fool the check
        ("class S(str):\n    def startswith(self, *a):\n        return False\n"
         "print(getattr((), S('__class__')))", "__class__"),
        ("class S(str):\n    def startswith(self, *a):\n        return False\n"
         "    def __eq__(self, other):\n        return False\n    def __hash__(self):\n        return 1\n"
         "print(getattr((), S('__class__')))", "__class__"),
    ],
)
def test_runtime_attribute_guard(code: str, name: str) -> None:
    """Names built at run time: the AST check cannot see them, the builtins wrappers do."""
    blocked(run(code), f"access to '{name}' is not allowed")


def test_violation_cannot_be_caught() -> None:
    code = (
        "try:\n"
        "    getattr((), '__cl' + 'ass__')\n"
        "except BaseException:\n"
        "    print('caught')\n"
        "print('continued')\n"
    )
    result = run(code)
    blocked(result, "access to '__class__' is not allowed (line 2)")
    assert result.stdout == ""


def test_writing_a_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "escape.txt"
    result = run(f"with open({str(target)!r}, 'w') as fh:\n    fh.write('pwned')")
    blocked(result, "open() is not allowed")
    assert not target.exists()


def test_fork_attempts() -> None:
    for code in (
        "import os\nos.fork()",
        "import subprocess\nsubprocess.Popen(['sleep', '10'])",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()",
        "import pty\npty.fork()",
    ):
        blocked(run(code), "is not allowed")


# --------------------------------------------------------------------------- exhaustion


def test_infinite_loop_hits_time_limit() -> None:
    result = run("print('started')\nwhile True:\n    pass", timeout_s=1, budget_s=3.5)
    blocked(result, "time limit of 1 s exceeded")
    assert result.stdout == "started\n"  # output so far is kept


def test_huge_integer_is_stopped() -> None:
    result = run("x = 10 ** 10 ** 8\nprint(x % 7)", timeout_s=1, budget_s=3.5)
    blocked(result, "time limit of 1 s exceeded")


def test_huge_integer_printing_is_refused() -> None:
    blocked(run("print(10 ** 5000)"), "ValueError", "integer string conversion")


def test_memory_bomb() -> None:
    blocked(run("blob = []\nwhile True:\n    blob.append('x' * 10**6)"), "memory limit of 256 MB exceeded")
    blocked(run("x = [0] * (10**9)"), "memory limit of 256 MB exceeded")
    blocked(run("x = bytearray(10**8)", memory_mb=64), "memory limit of 64 MB exceeded")


def test_memory_bomb_caught_by_program_still_ends() -> None:
    code = "a = []\nwhile True:\n    try:\n        a.append(' ' * 10**7)\n    except BaseException:\n        pass\n"
    result = run(code, timeout_s=1, budget_s=3.5)
    assert result.ok is False
    assert result.error in ("time limit of 1 s exceeded", "memory limit of 256 MB exceeded")


def test_huge_output_is_truncated() -> None:
    result = run("while True:\n    print('y' * 1000)")
    blocked(result, "output truncated at 10000 characters")
    assert len(result.stdout) == 10_000
    small = run("print('z' * 50)", max_output=20)
    assert small.stdout == "z" * 20
    blocked(small, "output truncated at 20 characters")


def test_deep_recursion() -> None:
    blocked(run("def f(n):\n    return f(n + 1)\nf(0)"), "RecursionError", "(line 2)")


def test_deeply_nested_data_repr() -> None:
    result = run("x = []\nfor _ in range(100000):\n    x = [x]\nprint(x)")
    blocked(result, "RecursionError")


def test_host_is_unharmed_after_hostile_runs() -> None:
    before = (os.getpid(), os.getcwd(), dict(os.environ))
    run("while True:\n    pass", timeout_s=0.5, budget_s=3)
    run("x = [0] * (10**9)")
    assert (os.getpid(), os.getcwd(), dict(os.environ)) == before
    assert run_program("print('still fine')").stdout == "still fine\n"


# --------------------------------------------------------------------------- layers on their own


def test_audit_layer_alone_blocks_real_modules(tmp_path: Path) -> None:
    """Language guards off: the program gets real builtins and modules; the hook still stops it."""
    target = tmp_path / "audit.txt"
    cases = [
        ("import os\nos.system('id')", "starting processes is not allowed (os.system)"),
        ("import os\nos.fork()", "starting processes is not allowed (os.fork)"),
        ("import os\nos.posix_spawn('/bin/true', ['true'], {})", "starting processes is not allowed"),
        ("import os\nos.execv('/bin/true', ['true'])", "os.exec"),
        ("import socket", "import of 'socket' is not allowed"),
        ("import subprocess", "import of 'subprocess' is not allowed"),
        (f"open({str(target)!r}, 'w').write('x')", "file access is not allowed"),
        ("print(open('/etc/passwd').read())", "file access is not allowed (open '/etc/passwd')"),
        ("import os\nos.kill(os.getppid(), 9)", "os.kill"),
        ("import sys\nprint(sys._getframe().f_back.f_globals)", "sys._getframe"),
        ("g = (i for i in [1])\nprint(g.gi_frame)", "access to 'gi_frame' is not allowed"),
        ("f = lambda: 0\nprint(f.__code__)", "access to '__code__' is not allowed"),
        ("import sys\nsys.addaudithook(lambda *a: None)", "sys.addaudithook"),
        ("eval('1')", "compiling or executing code at run time is not allowed"),
        ("import _imp, sys\n"
         "spec = sys.modules['_frozen_importlib'].ModuleSpec('_socket', None, origin='/x.so')\n"
         "_imp.create_dynamic(spec)", "import of '_socket' is not allowed"),
    ]
    for code, fragment in cases:
        blocked(run(code, language_guards=False), fragment)
    assert not target.exists()


def test_audit_hook_cannot_be_disarmed_from_runner_globals() -> None:
    code = (
        "import sys, os\n"
        "runner = sys.modules['__main__']\n"
        "runner._violation = lambda *a: None\n"
        "runner.attr_denied = lambda name: False\n"
        "runner._HARMLESS_EVENTS = frozenset({'os.system'})\n"
        "os.system('echo escaped')\n"
        "print('survived')\n"
    )
    result = run(code, language_guards=False)
    assert result.ok is False
    assert "survived" not in result.stdout and "escaped" not in result.stdout


def _os_layer(code: str) -> SandboxResult:
    return run(code, language_guards=False, audit_guard=False)


def test_os_layer_alone_stops_fork_and_threads() -> None:
    uid = _os_layer("import os\nprint(os.getuid())").stdout.strip()
    if uid == "0":
        pytest.skip("the child could not leave uid 0 here; RLIMIT_NPROC is not enforced for root")
    blocked(_os_layer("import os\nos.fork()"), "BlockingIOError")
    blocked(_os_layer("import _thread\n_thread.start_new_thread(print, ('x',))"), "can't start new thread")


def test_os_layer_alone_stops_file_writes() -> None:
    # /tmp is world-writable, so only the read-only mount (or RLIMIT_FSIZE) stops this.
    target = Path(f"/tmp/rag-sandbox-os-layer-{os.getpid()}-{time.monotonic_ns()}.txt")
    try:
        result = _os_layer(f"fh = open({str(target)!r}, 'w')\nfh.write('x' * 100)\nfh.close()")
        assert result.ok is False
        probe = _os_layer("import os\nprint(bool(os.statvfs('/tmp').f_flag & os.ST_RDONLY))")
        if probe.stdout.strip() == "True":
            assert "Read-only file system" in (result.error or "")
            assert not target.exists()
        else:  # no mount namespace here: RLIMIT_FSIZE still keeps any content out
            assert "File too large" in (result.error or "")
            assert target.stat().st_size == 0
    finally:
        target.unlink(missing_ok=True)


def test_os_layer_alone_cpu_and_memory() -> None:
    blocked(_os_layer("x = bytearray(10**9)"), "memory limit")
    result = run("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: pass",
                 timeout_s=1, budget_s=3.5, language_guards=False, audit_guard=False)
    blocked(result, "time limit of 1 s exceeded")


# --------------------------------------------------------------------------- API and CLI


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        run_program("print(1)", timeout_s=0)


def test_cli_success_and_failure_shapes() -> None:
    for code, ok in (("print(6 * 7)", True), ("import os", False), ("1/0", False)):
        proc = subprocess.run(
            [sys.executable, "-m", "rag.sandbox", "--timeout", "3"],
            input=code, capture_output=True, text=True, cwd=REPO, timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        payload = json.loads(proc.stdout)
        assert set(payload) == {"ok", "stdout", "error"}
        assert payload["ok"] is ok
        assert isinstance(payload["stdout"], str)
        if ok:
            assert payload == {"ok": True, "stdout": "42\n", "error": None}
        else:
            assert isinstance(payload["error"], str) and payload["error"]


def test_cli_output_is_ascii_json() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rag.sandbox"],
        input="print('\\u00e9\\ud800')", capture_output=True, text=True, cwd=REPO, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.isascii()
    assert json.loads(proc.stdout)["stdout"] == "\u00e9\ud800\n"


def test_cli_time_limit() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rag.sandbox", "--timeout", "0.5"],
        input="while True: pass", capture_output=True, text=True, cwd=REPO, timeout=30,
    )
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"ok": False, "stdout": "", "error": "time limit of 0.5 s exceeded"}


# --------------------------------------------------------------------------- findings of the reliability campaign


@pytest.mark.parametrize(
    "code, fragment",
    [
        # str.format reads attributes named in its template, past every attribute rule: the runner's private state
        ("print('{0.__globals__[_state].__dict__}'.format(getattr))", "may not read attributes"),
        ("print('{0.real}'.format(1))", "may not read attributes"),
        ("print('{0:{1.real}}'.format(1, 2))", "may not read attributes"),
        ("print('{0[_x]}'.format({'_x': 1}))", "starting with '_'"),
        ("t = '{0.__class__}'\nprint(t.format(1))", "only on a string literal"),
        ("print(str.format('{0.__class__}', 1))", "only on a string literal"),
        ("print('{x.__class__}'.format_map({'x': 1}))", "may not read attributes"),
        ("f = getattr('{0.__class__}', 'format')\nprint(f(1))", "'format' by name is not allowed"),
        # names a program defines follow the same rules as names it reads
        ("class __Evil:\n    pass", "'__Evil'"),
        ("def __getattr__(name):\n    return 1", "'__getattr__'"),
        ("class A:\n    def __getattribute__(self, n):\n        return 1", "'__getattribute__'"),
        ("class A:\n    def __init_subclass__(cls):\n        pass", "'__init_subclass__'"),
        ("def f(__builtins__=None):\n    return 1", "'__builtins__'"),
        ("g = lambda __x: __x", "'__x'"),
        ("print(dict(__class__=1))", "'__class__'"),
    ],
)
def test_format_strings_and_defined_names_cannot_reach_private_state(code: str, fragment: str) -> None:
    blocked(run(code), fragment)


@pytest.mark.parametrize(
    "code, fragment",
    [
        # a class pattern's keyword reads ``subject.name``: the same rules as ``subject.name``
        ("match '{0.__globals__[_state].__dict__}':\n    case str(format=f):\n        print(f(getattr))",
         ".format() is allowed only on a string literal"),
        ("match '{x.__globals__[_state]}':\n    case str(format_map=f):\n        print(f({'x': getattr}))",
         ".format_map() is allowed only on a string literal"),
        ("match str:\n    case type(format=f):\n        print(f('{0.__globals__[_state]}', getattr))",
         ".format() is allowed only on a string literal"),
        ("import collections\nmatch collections.UserString('{0.__globals__[_state]}'):\n"
         "    case collections.UserString(format=f):\n        print(f(getattr))", ".format() is allowed only"),
        ("g = (i for i in [1])\nmatch g:\n    case object(gi_frame=fr):\n        print(fr)", "'gi_frame'"),
        ("import datetime\nmatch datetime:\n    case object(_time=t):\n        print(t)", "'_time'"),
        # positional sub-patterns read the attributes ``__match_args__`` names, which type(name, bases, ns) sets
        ("S = type('S', (str,), {'__match_args__': ('format',)})\n"
         "match S('{0.__globals__[_state].__dict__}'):\n    case S(f):\n        print(f(getattr))",
         "positional sub-patterns are allowed only on builtin types"),
        ("M = type('M', (type,), {'__instancecheck__': lambda c, o: True})\n"
         "C = M('C', (), {'__match_args__': ('__globals__',)})\n"
         "match getattr:\n    case C(g):\n        print(g['_state'].chunks)",
         "positional sub-patterns are allowed only on builtin types"),
        ("import collections\nP = collections.namedtuple('P', 'x y')\nmatch P(1, 2):\n    case P(a, b):\n"
         "        print(a, b)", "use keywords (case Point(x=a, y=b))"),
        # a class body may look ``int`` up in a mapping its metaclass (__prepare__) chose
        ("M = type('M', (type,), {'__prepare__': classmethod(lambda m, n, b, **k: {})})\n"
         "class A(metaclass=M):\n    match 1:\n        case int(f):\n            print(f)",
         "not allowed directly in a class body"),
    ],
)
def test_class_patterns_follow_the_attribute_rules(code: str, fragment: str) -> None:
    result = run(code)
    blocked(result, fragment)
    assert result.stdout == ""


def test_builtin_class_patterns_still_work_and_meet_the_real_builtins() -> None:
    code = (
        "import collections\n"
        "P = collections.namedtuple('P', 'x y')\n"
        "def kind(v):\n"
        "    match v:\n"
        "        case int(n) | float(n) if n > 0:\n            return f'pos {n}'\n"
        "        case [str(a), *rest]:\n            return f'seq {a} {rest}'\n"
        "        case {'k': dict(d)}:\n            return f'map {d}'\n"
        "        case P(x=a, y=b):\n            return f'point {a} {b}'\n"
        "        case _:\n            return 'other'\n"
        "print([kind(v) for v in [3, 2.5, -1, ['a', 1], {'k': {'z': 1}}, P(1, 2)]])\n"
        # a program that rebinds ``str`` to a class naming ``format`` in __match_args__ still meets the real str
        "S = type('S', (str,), {'__match_args__': ('format',)})\n"
        "str = S\n"
        "match S('{0.real}'):\n    case str(f):\n        print(callable(f), f)\n"
    )
    result = run(code)
    assert result.ok, result
    assert result.stdout == (
        "['pos 3', 'pos 2.5', 'other', 'seq a [1]', \"map {'z': 1}\", 'point 1 2']\nFalse {0.real}\n"
    ), result.stdout


def test_ordinary_formatting_and_dunder_methods_still_work() -> None:
    code = (
        "class Money:\n"
        "    def __init__(self, cents):\n        self.cents = cents\n"
        "    def __add__(self, other):\n        return Money(self.cents + other.cents)\n"
        "    def __repr__(self):\n        return f'{self.cents / 100:.2f} EUR'\n"
        "print(Money(150) + Money(275), '{:>6.1f}|{name}|{row[1]}'.format(2.25, name='x', row=[0, 7]))\n"
    )
    result = run(code)
    assert result.ok and result.stdout == "4.25 EUR    2.2|x|7\n", result


def test_os_layers_the_kernel_refuses_are_reported_not_swallowed() -> None:
    """This machine grants root every namespace, so a kernel that refuses them is played by the test switch
    ``namespaces=False`` (the child then never calls unshare, as if it had failed)."""
    normal = run("print(1)")
    assert normal.ok
    if os.geteuid() == 0:
        assert normal.missing_layers == ()
    weakened = run("print(1)", namespaces=False)
    assert weakened.ok and weakened.stdout == "1\n", "the other layers still hold and the program runs"
    assert "network namespace" in weakened.missing_layers
    assert any("mount namespace" in m for m in weakened.missing_layers)
    assert weakened.to_dict()["missing_layers"] == list(weakened.missing_layers)
    strict = run("print(1)", namespaces=False, require_os_layers=True)
    assert not strict.ok and "refused to run" in (strict.error or "") and "network namespace" in strict.error
