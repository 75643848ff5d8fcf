"""Tensor types: dtype, device and a shape of sympy expressions.

Symbolic sizes are sympy symbols declared on the function (``func @f[s0]``); every dim is a sympy
expression over those symbols, so shape arithmetic (broadcasting, reshape checks, index math in
codegen) goes through sympy rather than ad-hoc integer code.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache, reduce
import operator

import sympy

from .dtypes import TORCH_DTYPES

Dim = sympy.Expr


def symbol(name: str) -> sympy.Symbol:
    """Symbols are positive integers: Dynamo specializes sizes 0 and 1, so a symbolic dim is >= 2."""
    return sympy.Symbol(name, integer=True, positive=True)


def as_dim(d) -> Dim:
    if isinstance(d, sympy.Expr):
        return d
    if isinstance(d, bool):
        raise TypeError(f"bool is not a dimension: {d!r}")
    if isinstance(d, int):
        return sympy.Integer(d)
    # torch.SymInt: its sympy expression lives on .node.expr, written with torch's own sympy
    # functions (FloorDiv, ModularIndexing, ...) that the IR text cannot spell; normalize them.
    node = getattr(d, "node", None)
    if node is not None and hasattr(node, "expr"):
        return normalize_expr(sympy.sympify(node.expr))
    raise TypeError(f"not a dimension: {d!r}")


# torch.utils._sympy.functions -> plain sympy, by class name (no torch import needed here).
# Each maps the already-normalized arguments to an expression the IR parser reads back.
_TORCH_SYMPY_FUNCS = {
    "FloorDiv": lambda a, b: sympy.floor(a / b),
    "CeilDiv": lambda a, b: sympy.ceiling(a / b),
    "CleanDiv": lambda a, b: a / b,  # exact division by construction
    "IntTrueDiv": lambda a, b: a / b,
    "FloatTrueDiv": lambda a, b: a / b,
    "ModularIndexing": lambda x, d, m: sympy.Mod(sympy.floor(x / d), m),
    "PythonMod": sympy.Mod,
    "Mod": sympy.Mod,
    "FloorToInt": sympy.floor,
    "CeilToInt": sympy.ceiling,
    "ToFloat": lambda x: x,  # the IR keeps scalar values exact; the consumer picks the dtype
    "Identity": lambda x: x,
    "PowByNatural": lambda a, b: a ** b,
    "FloatPow": lambda a, b: a ** b,
    "Max": sympy.Max,
    "Min": sympy.Min,
}
_PLAIN_FUNCS = (sympy.Add, sympy.Mul, sympy.Pow, sympy.floor, sympy.ceiling, sympy.Mod, sympy.Max,
                sympy.Min, sympy.Abs)


def normalize_expr(e) -> sympy.Expr:
    """A torch-produced sympy expression rewritten in the functions and symbols the IR text uses.

    Symbols become ember symbols (`symbol(name)`: same name, ember's assumptions, so a parsed
    graph compares equal); floats become exact rationals (the size grammar has no '.');
    torch's integer-division functions become floor/ceiling/Mod. Anything else (sqrt of a size,
    bitwise functions, ...) raises ValueError: the caller decides how to fall back.
    """
    e = sympy.sympify(e)
    if isinstance(e, sympy.Symbol):
        return symbol(e.name)
    if isinstance(e, sympy.Float):
        return sympy.Rational(float(e))
    if e.is_Number:
        if not e.is_Rational:
            raise ValueError(f"size expression {e} is not rational")
        return e
    if isinstance(e, (sympy.logic.boolalg.BooleanAtom,)):
        raise ValueError(f"{e} is a boolean, not a size")
    args = [normalize_expr(a) for a in e.args]
    fn = _TORCH_SYMPY_FUNCS.get(type(e).__name__)
    if fn is not None:
        return fn(*args)
    if e.func in _PLAIN_FUNCS:
        return e.func(*args)
    raise ValueError(f"size expression {e} uses {type(e).__name__}, which the IR cannot express")


def format_dim(d: Dim) -> str:
    if isinstance(d, sympy.Integer):  # most dims: skip sympy's printer (~10 us a call)
        return str(d.p)
    return _format_expr(d)


@lru_cache(maxsize=4096)
def _format_expr(d: Dim) -> str:
    # The printer and verifier print the same few symbolic dims over and over; they are immutable.
    return str(d).replace(" ", "")


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[Dim, ...]
    device: str = "cpu"

    def __post_init__(self):
        if self.dtype not in TORCH_DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; valid: {', '.join(TORCH_DTYPES)}")
        object.__setattr__(self, "shape", tuple(as_dim(d) for d in self.shape))

    def __hash__(self) -> int:
        return self._hash  # the same value dataclass would compute, once per instance

    @cached_property
    def _hash(self) -> int:
        # Types are dict keys in hot loops (the verifier's type memo, CSE); hashing the shape's
        # sympy dims each time was a tenth of the verifier's time.
        return hash((self.dtype, self.shape, self.device))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> Dim:
        return reduce(operator.mul, self.shape, sympy.Integer(1))

    @property
    def free_symbols(self) -> set[sympy.Symbol]:
        return set(self._free_symbols)  # a copy: callers may treat it as their own set

    @cached_property
    def _free_symbols(self) -> frozenset[sympy.Symbol]:
        # Computed once per type (the shape is immutable): the verifier asks for every value
        # after every pass. cached_property writes the instance __dict__, which `frozen` allows.
        out: set[sympy.Symbol] = set()
        for d in self.shape:
            out |= d.free_symbols
        return frozenset(out)

    def with_dtype(self, dtype: str) -> "TensorType":
        return TensorType(dtype, self.shape, self.device)

    def with_shape(self, shape) -> "TensorType":
        return TensorType(self.dtype, tuple(shape), self.device)

    def format(self, default_device: str | None = None) -> str:
        dims = ",".join(format_dim(d) for d in self.shape)
        text = f"{self.dtype}[{dims}]"
        if self.device != default_device:
            text += f"@{self.device}"
        return text

    def __str__(self) -> str:
        return self.format(default_device=self.device)


def dims_equal(a: Dim, b: Dim) -> bool:
    if a is b or a == b:
        return True
    diff = a - b
    if isinstance(diff, int) or diff.is_Number:  # two different numbers: no need to simplify
        return diff == 0
    return _simplifies_to_zero(diff)


@lru_cache(maxsize=4096)
def _simplifies_to_zero(diff: Dim) -> bool:
    # sympy.simplify costs ~50 us even on trivial input, and passes compare the same symbolic
    # dims again and again (every fuse merge, every verify): remember the answer per difference.
    return sympy.simplify(diff) == 0


def shapes_equal(a, b) -> bool:
    return len(a) == len(b) and all(dims_equal(x, y) for x, y in zip(a, b))


def broadcasts_to(small, shape) -> bool:
    """numpy broadcasting of `small` to exactly `shape` (trailing dims align; only 1 stretches)."""
    if len(small) > len(shape):
        return False
    lead = len(shape) - len(small)
    return all(dims_equal(d, 1) or dims_equal(d, shape[lead + i]) for i, d in enumerate(small))


def broadcast_shapes(*shapes) -> tuple[Dim, ...]:
    """Numpy broadcasting over symbolic dims; a dim broadcasts only if it is literally 1."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dim: Dim = sympy.Integer(1)
        for s in shapes:
            j = i - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if d == 1:
                continue
            if dim == 1:
                dim = d
            elif not dims_equal(dim, d):
                raise ValueError(f"shapes {[tuple(map(format_dim, s)) for s in shapes]} do not broadcast")
        out.append(dim)
    return tuple(out)
