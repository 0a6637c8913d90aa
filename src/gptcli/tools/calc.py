"""The ``calc`` tool: arithmetic through a whitelisting walk of Python's syntax tree, never eval."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from gptcli.engine.base import ToolSpec
from gptcli.tools.base import BUILT_IN, ToolOutput, failure

Number = int | float

MAX_EXPRESSION = 1000  # characters
MAX_DEPTH = 40  # nested operations; ast.parse itself recurses, so this is checked on the text too
MAX_BITS = 4096  # an integer result beyond this (about 1233 digits) is refused

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def _factorial(n: Number) -> int:
    if not float(n).is_integer() or not 0 <= n <= 1000:
        raise ValueError("factorial takes a whole number from 0 to 1000")
    return math.factorial(int(n))


_FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,  # log(x) natural, log(x, base)
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "degrees": math.degrees,
    "radians": math.radians,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "hypot": math.hypot,
    "factorial": _factorial,
    "min": min,
    "max": max,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}


class CalcError(ValueError):
    """The expression is not arithmetic this tool evaluates, or its value is out of bounds."""


def _check_size(value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalcError("the result is not a number")
    if isinstance(value, int) and value.bit_length() > MAX_BITS:
        raise CalcError("the result is too large")
    return value


def _power(base: Number, exponent: Number) -> Number:
    # Checked before computing: 9**9**9 would take minutes and gigabytes to refuse afterwards.
    exact = isinstance(base, int) and isinstance(exponent, int)
    if exact and exponent > 0 and abs(base) > 1 and exponent * math.log2(abs(base)) > MAX_BITS:
        raise CalcError("the result is too large")
    result = base**exponent
    if isinstance(result, complex):
        raise CalcError("the result is not a real number")
    return result


def _evaluate(node: ast.AST, depth: int = 0) -> Number:
    if depth > MAX_DEPTH:
        raise CalcError("the expression is nested too deeply")
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, depth + 1)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _check_size(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            return _check_size(_power(left, right))
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check_size(_UNARY[type(node.op)](_evaluate(node.operand, depth + 1)))
    if isinstance(node, ast.Name):
        return _constant(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        return _call(node.func.id, node.args, depth)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise CalcError("^ is not a power here: write 2**10 for 2 to the power 10")
    raise CalcError(f"not arithmetic: {type(node).__name__} is not allowed")


def _constant(name: str) -> Number:
    if name in _CONSTANTS:
        return _CONSTANTS[name]
    raise CalcError(f"unknown name {name!r}")


def _call(name: str, args: list[ast.expr], depth: int) -> Number:
    function = _FUNCTIONS.get(name)
    if function is None:
        raise CalcError(f"unknown function {name!r}")
    arguments = [_evaluate(arg, depth + 1) for arg in args]
    try:
        return _check_size(function(*arguments))
    except (ValueError, TypeError) as exc:
        raise CalcError(f"{name}: {exc}") from None


def calculate(expression: str) -> Number:
    """The value of an arithmetic ``expression``; raises CalcError (a ValueError) otherwise."""
    if len(expression) > MAX_EXPRESSION:
        raise CalcError(f"the expression is longer than {MAX_EXPRESSION} characters")
    nesting = deepest = 0
    for char in expression:
        nesting += (char == "(") - (char == ")")
        deepest = max(deepest, nesting)
    if deepest > MAX_DEPTH:
        raise CalcError("the expression is nested too deeply")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise CalcError("not a valid arithmetic expression") from None
    try:
        return _evaluate(tree)
    except ZeroDivisionError:
        raise CalcError("division by zero") from None
    except OverflowError:
        raise CalcError("the result is too large") from None
    except TypeError as exc:
        raise CalcError(f"wrong arguments: {exc}") from None


def format_number(value: Number) -> str:
    """Integers exactly; floats to 15 significant digits, so 0.1 + 0.2 reads 0.3."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return repr(float(f"{value:.15g}"))


class CalcTool:
    """Evaluates arithmetic exactly as written, refusing anything that is not arithmetic."""

    spec = ToolSpec(
        name="calc",
        description=(
            "Evaluate an arithmetic expression exactly. Supports numbers, + - * / // % ** "
            "(power), parentheses, the constants pi, e, tau and the functions "
            + ", ".join(sorted(_FUNCTIONS))
            + " (trigonometry in radians). Example: sqrt(2) * (3 + 4) ** 2"
        ),
        parameters={
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "The expression, e.g. (17 * 23) / 4 + sqrt(2)",
                    "maxLength": MAX_EXPRESSION,
                }
            },
            "required": ["expression"],
            "additionalProperties": False,
        },
    )
    read_only = True
    source = BUILT_IN

    def call(self, arguments: dict[str, Any], timeout: float) -> ToolOutput:
        try:
            return ToolOutput(format_number(calculate(str(arguments["expression"]))))
        except CalcError as exc:
            return failure(str(exc))
