"""Checks on a ``torch.export`` program (torch's schema dataclasses, parsed from the
archive's JSON) before torch's deserializer sees it.

The deserializer trusts the program: it evaluates every symbolic-shape string with
``sympy.sympify`` (a Python ``eval``), resolves a node target by walking attributes from
``torch``, ``operator`` or ``math`` (so ``torch.os.system`` is a target, and mimoc's frontend
calls parameter-only nodes when it folds them), and ``ep.module()`` ``exec``-s the program's
guard code. :func:`check_program` lets through only what an exported detector needs:

- node targets and operator arguments: ATen operators whose arguments are tensors, numbers,
  dtypes, devices, layouts or a few mode strings (so no file names and no generic
  objects), the shape-arithmetic functions torch's serializer writes (``_operator.mul``...),
  and a few higher-order operators that only call their (also checked) subgraphs;
- symbolic expressions: calls of sympy constructors and torch's sympy functions on
  literals and symbol names (``Mul(Integer(2), Symbol('s0', positive=True))``), with no
  attribute access, subscripts or dunder names;
- guard code: comparisons and arithmetic of input sizes (``L['y'].size()[0] == ...``);
- names of nodes, values and subgraphs: Python identifiers;
- no custom (TorchBind) objects.

Refusals are one-line :class:`~mimoc.errors.ModelFileError` s naming the file.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import operator
import re
from typing import Any

import torch

from mimoc.errors import ModelFileError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RESAVE = "export it again and save it with torch.export.save"

#: Higher-order operators an exported detector may contain; each only calls subgraphs of
#: the same (checked) program or an operator given as a (checked) argument.
_HIGHER_ORDER = {"wrap_with_set_grad_enabled", "wrap_with_autocast", "cond", "while_loop",
                 "map_impl", "scan", "invoke_subgraph", "auto_functionalized",
                 "auto_functionalized_v2"}
#: ATen argument types that carry no code and name no file (``str(arg.type)``).
_PLAIN_ARGUMENT = re.compile(r"(?:Optional\[|List\[)*(?:Tensor|int|float|bool|number|complex"
                             r"|SymInt|Device|Generator|Layout|ScalarType|MemoryFormat)\]*")
#: ATen string arguments that select a mode (``div(..., rounding_mode='floor')``).
_MODE_ARGUMENTS = {"rounding_mode", "approximate", "reduce", "reduction", "mode", "padding",
                   "padding_mode", "pad_mode", "padding_side", "equation", "indexing", "side",
                   "norm", "interpolation", "driver", "UPLO", "assert_msg"}

#: sympy names ``srepr`` writes for the shape expressions of an exported program.
_SYMPY_NAMES = {"Symbol", "Dummy", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod",
                "Min", "Max", "Abs", "floor", "ceiling", "sign", "Eq", "Ne", "Lt", "Le", "Gt",
                "Ge", "Equality", "Unequality", "StrictLessThan", "StrictGreaterThan",
                "LessThan", "GreaterThan", "And", "Or", "Not", "Xor", "ITE", "Piecewise",
                "ExprCondPair", "BooleanTrue", "BooleanFalse", "true", "false", "Infinity",
                "NegativeInfinity", "ComplexInfinity", "NaN", "nan", "oo", "zoo", "Zero",
                "One", "NegativeOne", "Half", "Tuple", "True", "False", "None"}
_EXPRESSION_TOKEN = re.compile(r"\s*(?:(?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
                               r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                               r"|(?P<string>'[A-Za-z_][A-Za-z0-9_]*')"
                               r"|(?P<op>\*\*|//|==|!=|<=|>=|[-+*/%(),=<>]))")
_SYMBOL_NAME = re.compile(r"[a-z]+[0-9]+")  # s0, u3, zuf0: torch's shape symbols
_MAX_EXPRESSION = 4000

#: What guard code may use (the forms torch's Python shape printer writes): sizes of the
#: inputs ``L['name']``, arithmetic and comparisons, a few pure functions.
_GUARD_NODES = (ast.Expression, ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Subscript,
                ast.Call, ast.Attribute, ast.Name, ast.Constant, ast.Load, ast.And, ast.Or,
                ast.Not, ast.USub, ast.UAdd, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv,
                ast.Mod, ast.Pow, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_GUARD_NAMES = {"L", "abs", "max", "min", "round", "int", "float", "math", "torch"}
_GUARD_ATTRIBUTES = {
    None: {"size", "stride", "storage_offset", "dim", "numel"},  # methods of an input
    "math": {"floor", "ceil", "trunc", "sqrt", "sin", "cos", "tan", "asin", "acos", "atan",
             "sinh", "cosh", "tanh", "exp", "log"},
    "torch": {"sym_float", "sym_int", "sym_max", "sym_min", "_sym_sqrt"},
}
_MAX_GUARD_POWER = 64  # s0 ** 2 is fine; 9 ** 9 ** 9 would hang every call of ep.module()


def check_program(program: Any, name: str) -> None:
    """Refuse anything in ``program`` (a ``torch._export.serde.schema.ExportedProgram``)
    that torch's deserializer or the program's users would run as code; see the module
    docstring."""
    from torch._export.serde import schema
    from torch._export.serde.union import _Union

    if not isinstance(program, schema.ExportedProgram):
        raise ModelFileError(f"{name}: the program JSON is not a torch.export program; "
                             f"{_RESAVE}")
    guards = program.guards_code
    if not isinstance(guards, list):
        raise ModelFileError(f"{name}: the program's guard code is not a list; {_RESAVE}")
    for guard in guards:
        _check_guard(guard, name)
    # names that become Python names (FX code, submodule attributes); an operator's argument
    # names (NamedArgument, "" for higher-order operators) only select schema arguments
    named = (schema.Node, schema.TensorArgument, schema.GraphArgument, schema.TokenArgument)
    stack: list[Any] = [program]
    while stack:
        item = stack.pop()
        if isinstance(item, _Union):
            kind = str(item.type)  # a plain str: the tag's own == refuses foreign tags
            if kind in ("as_custom_obj", "custom_obj"):
                raise _custom_object(name)
            if kind == "as_operator":
                _check_target(item.value, name)
            elif kind == "as_name":
                _check_name(item.value, name)
            stack.append(item.value)
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            if isinstance(item, schema.CustomObjArgument):
                raise _custom_object(name)
            if isinstance(item, schema.Node):
                _check_target(item.target, name)
                _check_metadata(item.metadata, name)
            elif isinstance(item, schema.SymExpr):
                _check_expression(item.expr_str, name)
            if isinstance(item, named) and item.name is not None:
                _check_name(item.name, name)
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item))


def _check_metadata(metadata: Any, name: str) -> None:
    """Module paths and op names from the metadata end up in artifact node names and in
    one-line error messages: no control characters (a stack trace has its own lines)."""
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{name}: a node's metadata is not a mapping; {_RESAVE}")
    for key, value in metadata.items():
        if not isinstance(value, str) or (key != "stack_trace" and _CONTROL.search(value)):
            raise ModelFileError(f"{name}: a node's {str(key)[:40]!r} metadata is not one line "
                                 f"of text; the file was edited, {_RESAVE}")


def _custom_object(name: str) -> ModelFileError:
    return ModelFileError(f"{name} holds a custom (TorchBind) object; mimoc never unpickles a "
                          f"model file and compiles tensor programs only: {_RESAVE} without it")


def _check_name(text: Any, name: str) -> None:
    if not isinstance(text, str) or not _IDENTIFIER.fullmatch(text):
        raise ModelFileError(f"{name}: the program names a value {str(text)[:60]!r}, not a "
                             f"Python identifier; the file was edited, {_RESAVE}")


# ---------------------------------------------------------------- operators

def _check_target(text: Any, name: str) -> None:
    if allowed_operator(text) is None:
        raise ModelFileError(
            f"{name}: the program calls {str(text)[:80]!r}, which mimoc does not load (only "
            f"ATen tensor operators, shape arithmetic and a few control-flow operators; never "
            f"Python functions or file I/O); {_RESAVE}")


def allowed_operator(text: Any) -> Any | None:
    """The operator the serialized target ``text`` names if mimoc loads it, else ``None``.

    Resolves exactly as torch's deserializer does (attributes from ``torch``, ``operator``,
    ``math``) but only for the names that can be one of the allowed operators.
    """
    if not isinstance(text, str) or len(text) > 200:
        return None
    parts = text.split(".")
    if not all(_IDENTIFIER.fullmatch(part) for part in parts):
        return None
    try:
        if parts[:3] == ["torch", "ops", "aten"] and len(parts) == 5:
            packet = getattr(torch.ops.aten, parts[3], None)
            if not isinstance(packet, torch._ops.OpOverloadPacket):
                return None
            op = getattr(packet, parts[4], None)
            return op if isinstance(op, torch._ops.OpOverload) and _plain_schema(op) else None
        if parts[:3] == ["torch", "ops", "higher_order"] and len(parts) == 4:
            op = getattr(torch.ops.higher_order, parts[3], None) \
                if parts[3] in _HIGHER_ORDER else None
            return op if isinstance(op, torch._ops.HigherOrderOperator) else None
        if len(parts) == 2 and parts[0] in ("_operator", "math", "torch"):
            from torch._export.serde.serialize import _SYM_OPS

            module = {"_operator": operator, "math": math, "torch": torch}[parts[0]]
            function = getattr(module, parts[1], None)
            return function if any(function is op for op in _SYM_OPS) else None
    except Exception:  # noqa: BLE001 - an operator registry that cannot answer: not allowed
        return None
    return None


def _plain_schema(op: Any) -> bool:
    for argument in op._schema.arguments:
        kind = str(argument.type)
        if _PLAIN_ARGUMENT.fullmatch(kind):
            continue
        if argument.name in _MODE_ARGUMENTS and kind in ("str", "Optional[str]"):
            continue
        return False
    return True


# ---------------------------------------------------------------- symbolic expressions

@functools.cache
def _expression_names() -> frozenset[str]:
    import sympy
    from torch.utils._sympy import functions

    torch_functions = {n for n, v in vars(functions).items()
                       if isinstance(v, type) and issubclass(v, sympy.Basic)
                       and not n.startswith("_")}
    return frozenset(_SYMPY_NAMES | torch_functions)


def _check_expression(text: Any, name: str) -> None:
    """Refuse a shape expression that ``sympy.sympify`` could turn into more than a sympy
    constructor call: only allowed names, symbol names, keyword names, literals."""
    if not isinstance(text, str) or len(text) > _MAX_EXPRESSION or "__" in text:
        raise _bad_expression(text, name)
    tokens, position = [], 0
    while text[position:].strip():
        match = _EXPRESSION_TOKEN.match(text, position)
        if match is None:
            raise _bad_expression(text, name)
        tokens.append(match)
        position = match.end()
    names = _expression_names()
    for index, token in enumerate(tokens):
        word = token.group("name")
        if word is None or word in names or _SYMBOL_NAME.fullmatch(word):
            continue
        following = tokens[index + 1].group("op") if index + 1 < len(tokens) else None
        if following != "=":  # a keyword argument's name (positive=True) is only a key
            raise _bad_expression(text, name)


def _bad_expression(text: Any, name: str) -> ModelFileError:
    return ModelFileError(f"{name}: the program holds a shape expression that is not plain "
                          f"sympy ({str(text)[:60]!r}); the file was edited, {_RESAVE}")


# ---------------------------------------------------------------- guard code

def _check_guard(code: Any, name: str) -> None:
    """Guard code is ``exec``-ed by ``ep.module()``: allow only arithmetic on input sizes."""
    try:
        tree = ast.parse(code, mode="eval") if isinstance(code, str) and "\n" not in code \
            and len(code) <= _MAX_EXPRESSION else None
    except SyntaxError:
        tree = None
    if tree is None or not all(_plain_guard_node(node) for node in ast.walk(tree)):
        raise ModelFileError(f"{name}: the program's guard code {str(code)[:60]!r} is not a "
                             f"plain check of input sizes; the file was edited, {_RESAVE}")


def _plain_guard_node(node: ast.AST) -> bool:
    if not isinstance(node, _GUARD_NODES):
        return False
    if isinstance(node, ast.Name):
        return node.id in _GUARD_NAMES
    if isinstance(node, ast.Attribute):
        owner = node.value.id if isinstance(node.value, ast.Name) and node.value.id in (
            "math", "torch") else None
        return node.attr in _GUARD_ATTRIBUTES[owner]
    if isinstance(node, ast.Call):
        return not node.keywords
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        power = node.right.value if isinstance(node.right, ast.Constant) else None
        return type(power) is int and 0 <= power <= _MAX_GUARD_POWER
    if isinstance(node, ast.Constant):
        value = node.value
        return (isinstance(value, int | float | bool) or value is None
                or (isinstance(value, str) and bool(_IDENTIFIER.fullmatch(value))))
    return True
