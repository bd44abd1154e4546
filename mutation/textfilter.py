"""Which mutants change only the text of a message: the rule ``make mutate`` excludes them by.

See ``__main__.py`` for the rule in words. It is decided on the mutant's AST,
never by the line it is on, so behaviour on the same line still counts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from chalicelib import exceptions

# Every domain error, read from chalicelib/exceptions.py so that one added later counts too; not
# TaskRejected, whose reasons are audit content.
MESSAGE_ERRORS = {name for name, value in vars(exceptions).items() if isinstance(value, type) and issubclass(
    value, (exceptions.RolebrokerError, exceptions.PolicyError, exceptions.ConfigurationError))} | {
    "ValueError", "AssertionError"}
POLICY_FAIL_TEXT_ARGS = 2  # self.fail(where, message, line): the first two are text
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}


def is_message_text(original: ast.FunctionDef, mutant: ast.FunctionDef,
                    extra_errors: Iterable[str] = ()) -> bool:
    """Whether the mutant changes nothing but the text of an error message or a log line.

    ``extra_errors``: more callables whose first argument is a message (the client's errors).
    """
    errors = MESSAGE_ERRORS | set(extra_errors)
    found = _difference(original.body, mutant.body, [])
    if found is None:
        return False
    before, after, parents = found
    if isinstance(before, ast.Call) and isinstance(after, ast.Call) and len(before.args) != len(after.args):
        return _argument_removed_is_text(before, after, errors)
    if any(isinstance(parent, ast.Call) and _is_log_call(parent) for parent in parents):
        return True  # anything in a log line's arguments
    fstrings = [i for i, parent in enumerate(parents) if isinstance(parent, ast.JoinedStr)]
    if fstrings and _is_message_argument(parents[fstrings[0]], parents[:fstrings[0]], errors):
        return True  # a value formatted into a message: only the text changes
    if isinstance(after, ast.Constant) and after.value is None:
        return _is_message_argument(before, parents, errors, any_value=not _is_text(before))
    if (isinstance(before, ast.Constant) and isinstance(after, ast.Constant) and isinstance(before.value, str)
            and isinstance(after.value, str)):
        return _is_message_argument(before, parents, errors)
    return False


def _difference(a: object, b: object, parents: list[ast.AST]) -> tuple[object, object, list[ast.AST]] | None:
    """The first place where two trees differ, with the ancestors of the first tree's node.

    A list of different length (a call that lost an argument) differs at the
    node that holds it.
    """
    if type(a) is not type(b):
        return a, b, parents
    if isinstance(a, list) and isinstance(b, list):
        for x, y in zip(a, b, strict=False):
            found = _difference(x, y, parents)
            if found is not None:
                return found
        return None
    if isinstance(a, ast.AST) and isinstance(b, ast.AST):
        for name in a._fields:
            va, vb = getattr(a, name, None), getattr(b, name, None)
            if isinstance(va, list) and isinstance(vb, list) and len(va) != len(vb):
                return a, b, parents
            if not isinstance(va, ast.AST | list) and (type(va), va) != (type(vb), vb):
                return a, b, parents  # a value of this node itself: a constant, an operator's name
            found = _difference(va, vb, [*parents, a])
            if found is not None:
                return found
        return None
    return None if a == b else (a, b, parents)


def _argument_removed_is_text(before: ast.Call, after: ast.Call, errors: set[str]) -> bool:
    if _is_log_call(before):
        return True  # any argument of a log line is its text
    kept = [ast.dump(arg) for arg in after.args]
    removed = [arg for arg in before.args if ast.dump(arg) not in kept]
    # Removing an argument of self.fail() breaks the call (TypeError): that is behaviour.
    return (len(removed) == 1 and _is_text(removed[0])
            and _callee(before) in errors - {"PolicyError"})


def _is_text(node: object) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and _is_text(node.left) and _is_text(node.right)


def _is_message_argument(node: object, parents: list[ast.AST], errors: set[str], *,
                         any_value: bool = False) -> bool:
    """Whether ``node`` is (part of) the text argument of an error or a log call.

    ``any_value``: the node is not a string; only a log call's arguments count then.
    """
    child: object = node
    for parent in reversed(parents):
        # Climb out of f-strings and concatenations to the argument itself.
        if isinstance(parent, ast.JoinedStr | ast.FormattedValue) or (
                isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Add)):
            child = parent
            continue
        if not isinstance(parent, ast.Call) or not any(arg is child for arg in parent.args):
            return False
        if _is_log_call(parent):
            return True
        if any_value:
            return False
        position = next(i for i, arg in enumerate(parent.args) if arg is child)
        if _callee(parent) == "fail":
            return position < POLICY_FAIL_TEXT_ARGS
        return _callee(parent) in errors and position == 0
    return False


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Name) and call.func.value.id == "self":
        return call.func.attr
    return None


def _is_log_call(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr in LOG_METHODS and isinstance(func.value, ast.Name)
            and func.value.id in {"LOG", "logging"})
