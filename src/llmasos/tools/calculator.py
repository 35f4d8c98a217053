"""``calculator``: arithmetic without ``eval``.

The expression is parsed with `ast` and only numbers, the arithmetic operators, parentheses
and a few named functions and constants are evaluated; anything else (names, attributes,
calls of other functions) is a `ToolError` that says what is allowed. Exponents and factorial
arguments are bounded so one call cannot tie up the process.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any, Final

from llmasos.tools.interface import Tool, ToolContext, ToolError, ToolResult, ToolSpec

# Short enough that a grammar-constrained call always closes within one agent turn's
# output cap (512 tokens; a small model's tokenizer spends one token per digit).
MAX_EXPRESSION_CHARS: Final = 200
MAX_EXPONENT: Final = 10_000
MAX_MAGNITUDE: Final = 1e308

BINARY: Final[dict[type[ast.operator], Callable[[Any, Any], Any]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY: Final[dict[type[ast.unaryop], Callable[[Any], Any]]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
}
CONSTANTS: Final = {"pi": math.pi, "e": math.e}


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; `ToolError` for anything else."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"the expression is over {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression[:80]!r}") from None
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (ValueError, OverflowError, TypeError) as error:
        raise ToolError(f"cannot compute {expression[:80]!r}: {error}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError(f"{expression[:80]!r} is not a finite number")
    return value if isinstance(value, int | float) else float(value)


def _eval(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ToolError(f"exponents above {MAX_EXPONENT} are not computed")
        result = BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise ToolError("the result is not a real number")
        if abs(result) > MAX_MAGNITUDE:
            raise ToolError("the result is too large")
        return result
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_eval(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in FUNCTIONS
        and not node.keywords
    ):
        return FUNCTIONS[node.func.id](*(_eval(arg) for arg in node.args))
    allowed = ", ".join(sorted(FUNCTIONS) + sorted(CONSTANTS))
    raise ToolError(
        f"only numbers, + - * / // % ** ( ) and {allowed} are allowed "
        f"(found {ast.unparse(node)[:40]!r})"
    )


class Calculator(Tool):
    spec = ToolSpec(
        name="calculator",
        description="Compute an arithmetic expression exactly, e.g. '(17 * 4) / 3' or "
        "'sqrt(2) * 10'.",
        parameters={
            "type": "object",
            "properties": {"expression": {"type": "string", "maxLength": MAX_EXPRESSION_CHARS}},
            "required": ["expression"],
            "additionalProperties": False,
        },
        permission="tasks",
        timeout_s=5.0,
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        expression = arguments["expression"]
        return ToolResult({"expression": expression, "result": evaluate(expression)})


calculator = Calculator()
