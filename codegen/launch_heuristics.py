"""Block sizes and reduction strategy: a deterministic heuristic behind one function,
`choose_launch`, so that the autotuner can replace it (it will search over the same `LaunchConfig`
fields).

Sizes may be symbolic (sympy expressions); a symbolic extent gets the default for "large".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import sympy

# A reduction whose reduced extent is at most this many elements is done by one block per output
# row holding the whole extent ("persistent"); longer ones loop over RBLOCK-sized chunks. Tests
# lower it to exercise the looped path on tiny inputs.
PERSISTENT_REDUCTION_MAX = 4096

POINTWISE_BLOCK = 1024      # elements per program for pointwise and data-movement kernels
LOOPED_RBLOCK = 1024        # chunk of the reduced extent per loop iteration
REDUCTION_TILE = 4096       # XBLOCK * RBLOCK upper bound, keeps register use bounded
ELEMENTS_PER_THREAD = 16    # measured on the H100 (bf16 softmax/norms/gelu at 4096 wide): 8 was 5-15% slower
OUTER_XBLOCKS = (32, 16, 8)  # outputs per program of an outer reduction, widest first
OUTER_MIN_PROGRAMS = 128     # about one program per SM of an H100 (132)


@dataclass(frozen=True)
class LaunchConfig:
    XBLOCK: int
    RBLOCK: int | None = None   # reductions only
    persistent: bool = False    # reductions only: whole reduced extent in one block
    num_warps: int = 4
    num_stages = None           # Triton's default; templates (matmul) set their own

    def blocks(self) -> dict[str, int]:
        """The kernel's constexpr block sizes, in its signature's order."""
        return {"XBLOCK": self.XBLOCK, **({"RBLOCK": self.RBLOCK} if self.RBLOCK is not None else {})}


def _concrete(n: sympy.Expr) -> int | None:
    n = sympy.sympify(n)
    return int(n) if n.is_Integer else None


def next_power_of_2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def warps_for(block_elements: int) -> int:
    """Enough warps that each thread holds about ELEMENTS_PER_THREAD elements (1 to 16)."""
    return max(1, min(16, block_elements // (32 * ELEMENTS_PER_THREAD)))


def pointwise_config(numel: sympy.Expr) -> LaunchConfig:
    n = _concrete(numel)
    block = POINTWISE_BLOCK if n is None else min(POINTWISE_BLOCK, next_power_of_2(n))
    return LaunchConfig(block, num_warps=warps_for(block))


def reduction_config(xnumel: sympy.Expr, rnumel: sympy.Expr) -> LaunchConfig:
    r = _concrete(rnumel)
    x = _concrete(xnumel)
    x_cap = next_power_of_2(x) if x is not None else None
    if r is not None and r <= PERSISTENT_REDUCTION_MAX:
        rblock = next_power_of_2(r)
        persistent = True
    else:
        rblock = min(LOOPED_RBLOCK, next_power_of_2(PERSISTENT_REDUCTION_MAX))
        persistent = False
    xblock = max(1, REDUCTION_TILE // rblock)
    if x_cap is not None:
        xblock = min(xblock, x_cap)
    return LaunchConfig(xblock, rblock, persistent, warps_for(xblock * rblock))


def outer_reduction_config(xnumel: sympy.Expr, rnumel: sympy.Expr) -> LaunchConfig:
    """A reduction that keeps the innermost dim (a column sum of a row-major matrix: the bias
    gradient of a Linear, a LayerNorm's weight gradient). Neighbouring outputs are neighbours in
    memory and the reduced extent is strided, so one output per program (reduction_config's
    XBLOCK=1 at a 4096-long extent) loads 2 useful bytes of each 32-byte sector: GPT-2's GELU
    backward with its bias gradient, [4096, 3072] bf16, took 0.386 ms on the H100, 15x its
    bytes at copy bandwidth. Here a program takes XBLOCK neighbouring outputs (a contiguous run
    of each row) and walks the reduced extent in RBLOCK-row chunks. XBLOCK is the widest of 32,
    16, 8 that still gives OUTER_MIN_PROGRAMS programs, since nothing splits the reduced extent
    across programs."""
    x, r = _concrete(xnumel), _concrete(rnumel)
    xblock = OUTER_XBLOCKS[-1]
    for width in OUTER_XBLOCKS:
        if x is None or -(-x // width) >= OUTER_MIN_PROGRAMS:
            xblock = width
            break
    if x is not None:
        xblock = min(xblock, next_power_of_2(x))
    if r is not None and r <= PERSISTENT_REDUCTION_MAX and xblock * next_power_of_2(r) <= REDUCTION_TILE:
        rblock, persistent = next_power_of_2(r), True
    else:
        rblock, persistent = min(LOOPED_RBLOCK, REDUCTION_TILE // xblock), False
    return LaunchConfig(xblock, rblock, persistent, warps_for(xblock * rblock))


def keeps_innermost(shape: Sequence[sympy.Expr], axes: Sequence[int]) -> bool:
    """Whether reducing `axes` of `shape` keeps its innermost dim (of more than one element):
    an outer reduction (outer_reduction_config)."""
    last = len(shape) - 1
    return last >= 0 and last not in axes and sympy.sympify(shape[last]) != 1


def choose_launch(kind: str, xnumel: sympy.Expr, rnumel: sympy.Expr | None = None,
                  outer: bool = False) -> LaunchConfig:
    """The launch configuration of a kernel of `kind` ("pointwise" or "reduction") over `xnumel`
    output elements (and `rnumel` reduced elements per output). `outer`: the reduction keeps the
    innermost dim (outer_reduction_config)."""
    if kind == "reduction":
        return outer_reduction_config(xnumel, rnumel) if outer else reduction_config(xnumel, rnumel)
    return pointwise_config(xnumel)
