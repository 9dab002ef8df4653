"""Safe arithmetic for the agent's ``calculator`` tool.

The expression is parsed with :mod:`ast` and evaluated by walking an allow-list
of node types; ``eval`` is never used, so names, attributes, subscripts,
comprehensions, lambdas and calls other than the listed functions are simply
not part of the language.

Accepted:

* integer and decimal numbers (``1_000``, ``2.5e3``), ``+ - * / // % **``,
  unary ``+``/``-``, parentheses;
* ``^`` as a synonym for ``**`` and ``×``/``÷`` for ``*``/``/`` (how people
  and models often write them);
* ``N%`` means "divided by 100" when the ``%`` is followed by the end, ``)`` or
  ``,``, or is written right after the number and followed by an operator:
  ``15% * 80`` -> 12, ``200 * 7.5%`` -> 15, ``50% - 20%`` -> 0.3.  With an operand
  after it (``7 % 3``, ``7%3``, ``7 % -3``) it stays the modulo operator.  Percent
  is plain division, so ``100 + 10%`` is 100.1, not 110;
* functions ``sqrt log exp sin cos tan abs round min max floor ceil log10``
  (``log(x, base)``; trigonometry in radians) and constants ``pi``, ``e``.

Guards, so a hostile or careless expression cannot hang or exhaust the process:
input length and nesting depth are capped, ``**`` estimates the size of an
integer result *before* computing it (``9**9**9`` is refused at once), every
integer result is capped at :data:`MAX_INT_DIGITS` digits, and float overflow,
``nan``/``inf`` and complex results become errors.
"""

from __future__ import annotations

import ast
import io
import math
import operator
import re
import tokenize
from typing import Callable, Union

from rag.errors import CalculatorError  # defined with the project's other errors; imported from here too

Number = Union[int, float]

MAX_EXPRESSION_CHARS = 1_000
MAX_INT_DIGITS = 1_000
_MAX_INT_BITS = int(MAX_INT_DIGITS * math.log2(10)) + 1
_MAX_DEPTH = 100


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int):
        raise CalculatorError("round() needs a whole number of digits")
    return round(x, max(-MAX_INT_DIGITS, min(ndigits, MAX_INT_DIGITS)))


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    # name: (function, min args, max args)
    "sqrt": (math.sqrt, 1, 1),
    "log": (_log, 1, 2),
    "log10": (math.log10, 1, 1),
    "exp": (math.exp, 1, 1),
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (lambda *args: min(args), 1, 100),  # _call checks the argument count first
    "max": (lambda *args: max(args), 1, 100),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
}

_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def calculate(expression: str) -> str:
    """Evaluate an arithmetic *expression* and return the result as text.

    Integers are exact (``2**100`` gives all 31 digits); floats are shown with
    15 significant digits (``0.1 + 0.2`` -> ``0.3``, ``10 / 4`` -> ``2.5``,
    ``10 / 2`` -> ``5``).  Raises :class:`CalculatorError` with a readable
    message for anything invalid, unsupported or too large.
    """
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be text")
    text = expression.strip()
    if not text:
        raise CalculatorError("the expression is empty")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters")
    text = _normalise(text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"invalid expression: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise CalculatorError("invalid expression: too deeply nested") from None
    try:
        value = _eval(tree.body, 0)
    except CalculatorError:
        raise
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("the result is too large") from None
    except RecursionError:
        raise CalculatorError("the expression is too deeply nested") from None
    except (ValueError, TypeError) as exc:
        raise CalculatorError(f"math error: {exc}") from None
    return _format(value)


_GROUPED = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?![\w.,])")
_CALL = re.compile(r"[A-Za-z_]\w*\s*\(")


def _normalise(text: str) -> str:
    """Apply the ``^``/``×``/``÷`` synonyms, drop thousands separators (``231,900 - 182,400``, as passages write
    numbers; not inside a call, where a comma separates arguments) and turn postfix percent into ``/100``."""
    text = text.replace("^", "**").replace("×", "*").replace("÷", "/")
    if not _CALL.search(text):
        text = _GROUPED.sub(lambda m: m.group(0).replace(",", ""), text)
    if "%" not in text:
        return text
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return text  # the parser will report the problem
    significant = [t for t in tokens if t.type not in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER)]
    pieces: list[str] = []
    last_end = 0
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def index(pos: tuple[int, int]) -> int:
        return offsets[pos[0] - 1] + pos[1]

    for i, tok in enumerate(significant):
        if tok.type == tokenize.OP and tok.string == "%":
            nxt = significant[i + 1] if i + 1 < len(significant) else None
            glued = i > 0 and significant[i - 1].end == tok.start
            is_percent = (
                nxt is None
                or (nxt.type == tokenize.OP and nxt.string in (")", ","))
                or (glued and nxt.type == tokenize.OP and nxt.string != "(")
            )
            if is_percent:
                start = index(tok.start)
                pieces.append(text[last_end:start])
                pieces.append("/100")
                last_end = index(tok.end)
    pieces.append(text[last_end:])
    return "".join(pieces)


def _eval(node: ast.AST, depth: int) -> Number:
    if depth > _MAX_DEPTH:
        raise CalculatorError("the expression is too deeply nested")
    if isinstance(node, ast.Constant):
        if type(node.value) in (int, float):
            return _check(node.value)
        raise CalculatorError(f"unsupported value {node.value!r}: only numbers are allowed")
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in _FUNCTIONS:
            raise CalculatorError(f"{node.id} is a function: write {node.id}(...)")
        raise CalculatorError(
            f"unknown name {node.id!r} (allowed constants: pi, e; functions: {', '.join(_FUNCTIONS)})"
        )
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        operand = _eval(node.operand, depth + 1)
        return _check(-operand if isinstance(node.op, ast.USub) else +operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        left = _eval(node.left, depth + 1)
        right = _eval(node.right, depth + 1)
        return _check(_BINARY_OPS[type(node.op)](left, right))
    if isinstance(node, ast.Call):
        return _call(node, depth)
    raise CalculatorError(f"unsupported syntax: {_describe(node)}")


def _power(base: Number, exponent: Number) -> Number:
    """``base ** exponent`` after checking the result size without computing it."""
    if isinstance(base, int) and isinstance(exponent, int):
        if exponent < 0:
            if base == 0:
                raise ZeroDivisionError
            try:
                return 1 / _power(base, -exponent)  # exact big-int division, then float
            except CalculatorError:
                return 0.0  # magnitude below 10**-1000

        if abs(base) > 1:
            bits = exponent * math.log2(abs(base))
            if bits > _MAX_INT_BITS:
                digits = exponent * math.log10(abs(base))
                raise CalculatorError(
                    f"the result would have about {_approx(digits)} digits; "
                    f"the limit is {MAX_INT_DIGITS}"
                )
        return base**exponent
    # at least one float: results beyond ~1e308 raise OverflowError quickly
    result = base**exponent
    if isinstance(result, complex):
        raise CalculatorError("the result is not a real number")
    return result


_BINARY_OPS: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _power,
}


def _call(node: ast.Call, depth: int) -> Number:
    if not isinstance(node.func, ast.Name):
        raise CalculatorError(f"unsupported syntax: {_describe(node.func)} cannot be called")
    name = node.func.id
    if name not in _FUNCTIONS:
        raise CalculatorError(
            f"function {name!r} is not allowed (allowed: {', '.join(_FUNCTIONS)})"
        )
    if node.keywords:
        raise CalculatorError(f"{name}() does not take keyword arguments")
    fn, low, high = _FUNCTIONS[name]
    if not low <= len(node.args) <= high:
        expected = str(low) if low == high else f"{low} to {high}"
        raise CalculatorError(f"{name}() takes {expected} argument(s), got {len(node.args)}")
    args = [_eval(arg, depth + 1) for arg in node.args]
    return _check(fn(*args))


def _check(value: object) -> Number:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculatorError("the result is not a real number")
    if isinstance(value, float):
        if math.isnan(value):
            raise CalculatorError("the result is not a number (nan)")
        if math.isinf(value):
            raise CalculatorError("the result is too large")
    elif value.bit_length() > _MAX_INT_BITS:
        raise CalculatorError(f"the result has more than {MAX_INT_DIGITS} digits")
    return value


def _format(value: Number) -> str:
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.15g}"


def _approx(digits: float) -> str:
    return f"{digits:,.0f}" if digits < 1e15 else f"{digits:.3g}"


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access",
        ast.Subscript: "indexing",
        ast.Lambda: "lambda",
        ast.Compare: "comparison",
        ast.BoolOp: "boolean operator",
        ast.Tuple: "tuple (use a single expression; no commas outside function calls)",
        ast.List: "list",
        ast.Dict: "dict",
        ast.Set: "set",
        ast.JoinedStr: "f-string",
        ast.NamedExpr: "assignment",
        ast.IfExp: "conditional expression",
        ast.ListComp: "comprehension",
        ast.GeneratorExp: "generator",
        ast.Starred: "starred argument",
    }
    for kind, label in names.items():
        if isinstance(node, kind):
            return label
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return f"operator {type(node.op).__name__}"
    return type(node).__name__
