# ruff: noqa: E501
"""Self-check lint: find asserts (and ``check_claim`` conditions) that cannot fail.

A notebook is read as one program: its code cells in order, with the expression each name was last
assigned (a name assigned in cell 3 and re-derived in cell 9 is caught). A test file is read the same
way, each function in its own scope. Flagged shapes (issue 20):

- ``same``: both sides are the same expression once plain aliases (``b = a``) are resolved:
  ``y == y``, ``torch.equal(w, w)``, ``torch.allclose(a, a)``.
- ``always``: true for any value: ``len(x) >= 0``, ``len(x) > -1``, ``0 <= share <= 1``,
  ``share <= 1`` for a share/fraction, ``matrix_rank(G) <= min(...)``, ``max(a, b) <= a + b``,
  ``assert True``, ``x is not None`` right after ``x = f(...)``.
- ``filter``: the bound a filter just applied (``keep = v <= m`` then ``v[keep].max() <= m``; a list
  built with ``if x <= m`` then ``max(lst) <= m``; ``n = min(k, m)`` then ``n <= m``).
- ``recount``: a value compared with the expression that produced it (``a = <e>`` ... ``a == <e>``).
- ``definition``: a restated definition: ``y = x / x.max()`` then ``y.max() == 1``; ``t = a + b`` (or
  ``sum(parts)``) then ``t == b + a``.
- ``nonempty``: a cell that generates an answer and checks it only for non-emptiness.

A line can be kept with ``# selfcheck: ok (<why it can fail>)`` on the assert's first line.
"""

from __future__ import annotations

import ast
import json
import sys
from dataclasses import dataclass
from pathlib import Path

WAIVER = "# selfcheck: ok"
_SHARE_WORDS = ("share", "fraction", "frac", "proportion", "recall", "accuracy", "prob")
_EQUAL_CALLS = {"equal", "allclose", "isclose", "assert_close", "array_equal", "assert_allclose",
                "approx_equal"}
_GENERATE_WORDS = ("generate", "chat", "answer", "reply", "complete")


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str
    text: str

    def __str__(self) -> str:
        return f"{self.where}: [{self.kind}] {self.text}"


def _u(node: ast.AST) -> str:
    return ast.unparse(node)


def _const(node: ast.AST):
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _const(node.operand)
        return None if v is None else -v
    return None


def _addends(node: ast.AST) -> list[str] | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _addends(node.left) or [_u(node.left)]
        right = _addends(node.right) or [_u(node.right)]
        return left + right
    return None


def _is_share(node: ast.AST) -> bool:
    name = _u(node).lower()
    if isinstance(node, ast.Call) or "/" in name or "-" in name or "*" in name:
        return False
    last = name.split(".")[-1].split("[")[0]
    return last in {"acc", "p", "pct_of_one"} or any(w in last for w in _SHARE_WORDS)


def _is_len(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"len", "abs"}


def _unit_bound(test: ast.AST) -> bool:
    """A chained ``0 <= x <= 1`` (or with ``<``)."""
    return isinstance(test, ast.Compare) and len(test.ops) == 2 and _const(test.left) == 0 \
        and _const(test.comparators[1]) == 1 and all(isinstance(o, ast.LtE | ast.Lt) for o in test.ops)


def _call_name(node: ast.AST) -> str:
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Attribute):
            return f.attr
        if isinstance(f, ast.Name):
            return f.id
    return ""


class _Scope:
    def __init__(self, parent: _Scope | None = None):
        self.assigned: dict[str, ast.AST] = dict(parent.assigned) if parent else {}
        self.masks: dict[str, tuple[str, str, str]] = dict(parent.masks) if parent else {}
        self.filtered: dict[str, tuple[str, str]] = dict(parent.filtered) if parent else {}
        self.clamped: dict[str, str] = dict(parent.clamped) if parent else {}
        # a recount is a tautology only if nothing ran in between that could change its inputs:
        # ``epoch`` counts the statements with side effects (bare calls, blocks, del)
        self.epoch: list[int] = parent.epoch if parent else [0]
        self.assigned_at: dict[str, int] = dict(parent.assigned_at) if parent else {}


class _Checker:
    def __init__(self, where: str, lines: list[str]):
        self.where = where
        self.lines = lines
        self.found: list[Finding] = []
        self.prev_stmt: ast.stmt | None = None

    # ---------- helpers
    def _waived(self, node: ast.AST) -> bool:
        lineno = getattr(node, "lineno", 0)
        return 0 < lineno <= len(self.lines) and WAIVER in self.lines[lineno - 1]

    def _flag(self, kind: str, node: ast.AST, scope_node: ast.AST):
        if not self._waived(scope_node):
            self.found.append(Finding(kind, self.where, _u(node)))

    def _alias(self, node: ast.AST, sc: _Scope) -> str:
        seen = 0
        while isinstance(node, ast.Name) and isinstance(sc.assigned.get(node.id), ast.Name) and seen < 10:
            node = sc.assigned[node.id]
            seen += 1
        return _u(node)

    def _defined_as(self, name_node: ast.AST, other: ast.AST, sc: _Scope) -> str | None:
        """The kind of tautology if ``name_node`` was assigned ``other`` (or a permutation of its sum)."""
        if not isinstance(name_node, ast.Name) or name_node.id not in sc.assigned:
            return None
        expr = sc.assigned[name_node.id]
        if isinstance(expr, ast.Name):
            return None
        if sc.assigned_at.get(name_node.id) != sc.epoch[0]:
            return None  # a before/after check: something that could change it ran in between
        if _u(expr) == _u(other):
            return "recount"
        a, b = _addends(expr), _addends(other)
        if a and b and sorted(a) == sorted(b):
            return "definition"
        # t = sum(parts)  vs  sum(parts) written with a generator over the same list
        return None

    # ---------- the condition classifier
    def condition(self, test: ast.AST, sc: _Scope, anchor: ast.AST):
        if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
            for v in test.values:
                self.condition(v, sc, anchor)
            return
        if isinstance(test, ast.Constant) and test.value:
            self._flag("always", test, anchor)
            return
        if isinstance(test, ast.Call):
            self._call_condition(test, sc, anchor)
            return
        if isinstance(test, ast.Compare):
            self._compare(test, sc, anchor)

    def _call_condition(self, test: ast.Call, sc: _Scope, anchor: ast.AST):
        name = _call_name(test)
        if name in _EQUAL_CALLS and len(test.args) >= 2:
            a, b = test.args[0], test.args[1]
            if self._alias(a, sc) == self._alias(b, sc) and not _calls(a):
                self._flag("same", test, anchor)
                return
            for x, y in ((a, b), (b, a)):
                kind = self._defined_as(x, y, sc)
                if kind:
                    self._flag(kind, test, anchor)
                    return
        # (v[keep] <= m).all() / all(x <= m for x in lst)
        if name == "all" and isinstance(test.func, ast.Attribute) and isinstance(test.func.value, ast.Compare):
            self._compare(test.func.value, sc, anchor)
        if name == "all" and isinstance(test.func, ast.Name) and test.args and isinstance(test.args[0], ast.GeneratorExp):
            gen = test.args[0]
            comp = gen.generators[0]
            if _unit_bound(gen.elt):  # all(0 <= v <= 1 for v in shares)
                self._flag("always", test, anchor)
                return
            if isinstance(gen.elt, ast.Compare) and len(gen.elt.ops) == 1 and isinstance(comp.iter, ast.Name):
                src = comp.iter.id
                if src in sc.filtered and isinstance(comp.target, ast.Name) and _u(gen.elt.left) == comp.target.id:
                    bound, op = sc.filtered[src]
                    if self._same_bound(gen.elt.ops[0], op, gen.elt.comparators[0], bound):
                        self._flag("filter", test, anchor)

    @staticmethod
    def _same_bound(op: ast.cmpop, filt_op: str, rhs: ast.AST, bound: str) -> bool:
        if _u(rhs) != bound:
            return False
        return (isinstance(op, ast.LtE) and filt_op in {"<=", "<"}) or (isinstance(op, ast.Lt) and filt_op == "<")

    def _compare(self, test: ast.Compare, sc: _Scope, anchor: ast.AST):
        operands = [test.left, *test.comparators]
        if _unit_bound(test):
            self._flag("always", test, anchor)
            return
        for op, left, right in zip(test.ops, operands, operands[1:], strict=False):
            kind = self._pair(op, left, right, sc)
            if kind:
                self._flag(kind, test, anchor)
                return

    def _pair(self, op: ast.cmpop, left: ast.AST, right: ast.AST, sc: _Scope) -> str | None:  # noqa: PLR0911, PLR0912
        # normalise > and >= to < and <=
        if isinstance(op, ast.Gt | ast.GtE):
            left, right = right, left
            op = ast.Lt() if isinstance(op, ast.Gt) else ast.LtE()
        ls, rs = self._alias(left, sc), self._alias(right, sc)
        if isinstance(op, ast.Eq | ast.LtE | ast.Is) and ls == rs and not _calls(left):
            return "same"  # (f(x) == f(x) calls twice: a determinism check, which can fail)
        lc, rc = _const(left), _const(right)
        # len(x) >= 0, len(x) > -1  (now: const <(=) len(x))
        if _is_len(right) and lc is not None and (lc < 0 or (lc == 0 and isinstance(op, ast.LtE))):
            return "always"
        # share <= 1, share >= 0
        if _is_share(left) and rc is not None and rc >= 1 and isinstance(op, ast.LtE):
            return "always"
        if _is_share(right) and lc is not None and lc <= 0 and isinstance(op, ast.LtE):
            return "always"
        # matrix_rank(G) <= min(...); max(a, b) <= a + b
        if _call_name(left) == "matrix_rank" and _call_name(right) == "min" and isinstance(op, ast.LtE):
            return "always"
        if _call_name(left) == "max" and isinstance(left, ast.Call) and len(left.args) == 2 \
                and _addends(right) and sorted(_addends(right)) == sorted(_u(a) for a in left.args):
            return "always"
        # x is not None right after x = f(...)
        if isinstance(op, ast.IsNot) and isinstance(left, ast.Name) and _const(right) is None \
                and isinstance(right, ast.Constant) and right.value is None:
            prev = self.prev_stmt
            if isinstance(prev, ast.Assign) and any(isinstance(t, ast.Name) and t.id == left.id for t in prev.targets) \
                    and isinstance(prev.value, ast.Call):
                return "always"
        if isinstance(op, ast.LtE | ast.Lt):
            if self._filtered_bound(op, left, right, sc):
                return "filter"
            if isinstance(left, ast.Name) and left.id in sc.clamped and sc.clamped[left.id] == _u(right) \
                    and isinstance(op, ast.LtE):
                return "filter"
        if isinstance(op, ast.Eq):
            for x, y in ((left, right), (right, left)):
                kind = self._defined_as(x, y, sc)
                if kind:
                    return kind
                if self._normalised_max(x, y, sc):
                    return "definition"
        return None

    def _filtered_bound(self, op, left, right, sc: _Scope) -> bool:
        # v[keep].max() <= m  /  max(v[keep]) <= m  /  max(lst) <= m  /  lst.max() <= m
        inner = None
        if isinstance(left, ast.Call) and _call_name(left) == "max":
            if isinstance(left.func, ast.Attribute):
                inner = left.func.value
            elif left.args:
                inner = left.args[0]
        elif isinstance(left, ast.Subscript):
            inner = left
        if inner is None:
            return False
        if isinstance(inner, ast.Subscript) and isinstance(inner.slice, ast.Name) and inner.slice.id in sc.masks:
            src, fop, bound = sc.masks[inner.slice.id]
            return src == _u(inner.value) and self._same_bound(op, fop, right, bound)
        if isinstance(inner, ast.Subscript) and isinstance(inner.slice, ast.Compare):
            c = inner.slice
            if len(c.ops) == 1 and _u(c.left) == _u(inner.value):
                return self._same_bound(op, _OPS.get(type(c.ops[0]), ""), right, _u(c.comparators[0]))
        if isinstance(inner, ast.Name) and inner.id in sc.filtered:
            bound, fop = sc.filtered[inner.id]
            return self._same_bound(op, fop, right, bound)
        return False

    def _normalised_max(self, x: ast.AST, y: ast.AST, sc: _Scope) -> bool:
        # y.max() == 1 where y = v / v.max()  (or max(y) == 1, y = v / max(v))
        if _const(y) != 1 or _call_name(x) != "max" or not isinstance(x, ast.Call):
            return False
        base = x.func.value if isinstance(x.func, ast.Attribute) else (x.args[0] if x.args else None)
        while isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute) and base.func.attr in {"abs", "item", "float"}:
            base = base.func.value
        expr = sc.assigned.get(base.id) if isinstance(base, ast.Name) else base
        if not (isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Div)):
            return False
        denom = expr.right
        return _call_name(denom) == "max" and _u(expr.left) in _u(denom)

    # ---------- statements, in order
    def record_assign(self, target: ast.AST, value: ast.AST, sc: _Scope):
        if not isinstance(target, ast.Name):
            return
        name = target.id
        sc.assigned[name] = value
        sc.assigned_at[name] = sc.epoch[0]
        sc.masks.pop(name, None)
        sc.filtered.pop(name, None)
        sc.clamped.pop(name, None)
        if isinstance(value, ast.Compare) and len(value.ops) == 1 and type(value.ops[0]) in _OPS:
            sc.masks[name] = (_u(value.left), _OPS[type(value.ops[0])], _u(value.comparators[0]))
        if isinstance(value, ast.ListComp | ast.GeneratorExp | ast.SetComp):
            for comp in value.generators:
                for cond in comp.ifs:
                    if isinstance(cond, ast.Compare) and len(cond.ops) == 1 and type(cond.ops[0]) in _OPS \
                            and _u(cond.left) in {_u(value.elt)} | ({comp.target.id} if isinstance(comp.target, ast.Name) else set()):
                        sc.filtered[name] = (_u(cond.comparators[0]), _OPS[type(cond.ops[0])])
                        if _u(cond.left) != _u(value.elt) and not (isinstance(comp.target, ast.Name)
                                                                  and _u(value.elt) == comp.target.id):
                            sc.filtered.pop(name)
        if isinstance(value, ast.Subscript) and isinstance(value.slice, ast.Compare):
            c = value.slice
            if len(c.ops) == 1 and type(c.ops[0]) in _OPS and _u(c.left) == _u(value.value):
                sc.filtered[name] = (_u(c.comparators[0]), _OPS[type(c.ops[0])])
        if isinstance(value, ast.Call) and _call_name(value) == "min" and isinstance(value.func, ast.Name) \
                and len(value.args) == 2:
            for a in value.args:
                if _const(a) is not None or isinstance(a, ast.Name | ast.Attribute):
                    sc.clamped[name] = _u(a)

    def body(self, stmts: list[ast.stmt], sc: _Scope):
        for st in stmts:
            self.stmt(st, sc)
            self.prev_stmt = st

    def stmt(self, st: ast.stmt, sc: _Scope):
        if isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef):
            saved = self.prev_stmt
            self.prev_stmt = None
            self.body(st.body, _Scope(sc))
            self.prev_stmt = saved
            return
        if isinstance(st, ast.ClassDef):
            self.body(st.body, _Scope(sc))
            return
        if isinstance(st, ast.Assert):
            self.condition(st.test, sc, st)
        if _has_effects(st):
            sc.epoch[0] += 1
        for call in _calls_in(st):
            if _call_name(call) == "check_claim":
                cond = call.args[1] if len(call.args) >= 2 else next(
                    (k.value for k in call.keywords if k.arg == "holds"), None)
                if cond is not None:
                    self.condition(cond, sc, call)
        if isinstance(st, ast.Assign):
            if len(st.targets) == 1:
                self.record_assign(st.targets[0], st.value, sc)
            for t in st.targets:
                if isinstance(t, ast.Tuple):
                    for e in t.elts:
                        if isinstance(e, ast.Name):
                            sc.assigned.pop(e.id, None)
        elif isinstance(st, ast.AnnAssign) and st.value is not None:
            self.record_assign(st.target, st.value, sc)
        elif isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name):
            sc.assigned.pop(st.target.id, None)
        elif isinstance(st, ast.For | ast.While | ast.If | ast.With | ast.Try):
            for t in ast.walk(st):  # names rebound inside a block: forget what they were
                if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store):
                    sc.assigned.pop(t.id, None)
            for block in ("body", "orelse", "finalbody"):
                self.body(getattr(st, block, []) or [], _Scope(sc))
            for h in getattr(st, "handlers", []) or []:
                self.body(h.body, _Scope(sc))


_PURE = {"print", "len", "sum", "max", "min", "abs", "round", "float", "int", "str", "list", "dict", "tuple",
         "set", "sorted", "range", "zip", "enumerate", "isinstance", "format", "item", "all", "any", "mean",
         "tolist", "keys", "values", "items", "get", "numel", "dim", "size", "startswith", "endswith", "strip",
         "split", "join", "lower", "upper", "replace", "fmt_bytes", "isclose", "allclose", "equal"}


def _has_effects(st: ast.stmt) -> bool:
    """Whether a statement may change state: a call outside ``_PURE``, a block, ``del`` or a subscript store."""
    if isinstance(st, ast.Delete | ast.For | ast.While | ast.With | ast.Try | ast.AsyncWith | ast.AsyncFor):
        return True
    if isinstance(st, ast.Assign | ast.AugAssign) and any(
            isinstance(t, ast.Subscript | ast.Attribute) for t in getattr(st, "targets", [getattr(st, "target", None)])):
        return True
    return any(isinstance(n, ast.Call) and _call_name(n) not in _PURE for n in ast.walk(st))


_OPS = {ast.LtE: "<=", ast.Lt: "<", ast.GtE: ">=", ast.Gt: ">"}


def _calls(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) for n in ast.walk(node))


def _calls_in(st: ast.stmt):
    if isinstance(st, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.For | ast.While | ast.If
                  | ast.With | ast.Try):
        return []
    return [n for n in ast.walk(st) if isinstance(n, ast.Call)]


def _nonempty_only(cell: ast.Module, lines: list[str]) -> list[str]:
    asserts = [n for n in ast.walk(cell) if isinstance(n, ast.Assert)]
    if not asserts:
        return []
    generates = any(any(w in _call_name(c).lower() for w in _GENERATE_WORDS)
                    for c in ast.walk(cell) if isinstance(c, ast.Call))
    if not generates:
        return []

    def nonempty(t: ast.AST) -> bool:
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and _is_len(t.left):
            c = _const(t.comparators[0])
            return (isinstance(t.ops[0], ast.Gt) and c == 0) or (isinstance(t.ops[0], ast.GtE) and c == 1)
        if isinstance(t, ast.Call) and _call_name(t) == "strip":
            return True
        if isinstance(t, ast.Name | ast.Attribute | ast.Subscript):
            return True
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.NotEq) \
                and isinstance(t.comparators[0], ast.Constant) and t.comparators[0].value == "":
            return True
        if isinstance(t, ast.Call) and _call_name(t) == "all" and t.args and isinstance(t.args[0], ast.GeneratorExp):
            return nonempty(t.args[0].elt)
        if isinstance(t, ast.BoolOp):
            return all(nonempty(v) for v in t.values)
        return False

    live = [a for a in asserts if WAIVER not in lines[a.lineno - 1]]
    if live and all(nonempty(a.test) for a in live):
        return [_u(a) for a in live]
    return []


def check_cells(cells: list[str], where: str = "<cells>", nonempty: bool = True) -> list[Finding]:
    """Lint code cells run in order, as a notebook runs them."""
    sc = _Scope()
    found: list[Finding] = []
    for i, src in enumerate(cells):
        clean = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in src.splitlines())
        try:
            tree = ast.parse(clean)
        except SyntaxError:
            continue
        lines = clean.splitlines()
        ck = _Checker(f"{where} cell {i}", lines)
        ck.body(tree.body, sc)
        found += ck.found
        if nonempty:
            found += [Finding("nonempty", f"{where} cell {i}", t) for t in _nonempty_only(tree, lines)]
    return found


def check_source(source: str, where: str = "<source>") -> list[Finding]:
    return check_cells([source], where)


def notebook_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def check_notebook(path: Path) -> list[Finding]:
    return check_cells(notebook_cells(path), path.name)


def check_test_file(path: Path) -> list[Finding]:
    return check_cells([path.read_text(encoding="utf-8")], path.name, nonempty=False)


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    paths = [Path(a) for a in argv] or [*sorted((root / "notebooks").glob("**/*.ipynb")),
                                         *sorted((root / "tests").glob("test_*.py"))]
    found = []
    for p in paths:
        found += check_notebook(p) if p.suffix == ".ipynb" else check_test_file(p)
    for f in found:
        print(f)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
