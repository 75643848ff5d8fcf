"""Block sizes and reduction strategy: a deterministic heuristic behind one function,
`choose_launch`, so that the autotuner can replace it (it will search over the same `LaunchConfig`
fields).

Sizes may be symbolic (sympy expressions); a symbolic extent gets the default for "large".
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy

# A reduction whose reduced extent is at most this many elements is done by one block per output
# row holding the whole extent ("persistent"); longer ones loop over RBLOCK-sized chunks. Tests
# lower it to exercise the looped path on tiny inputs.
PERSISTENT_REDUCTION_MAX = 4096

POINTWISE_BLOCK = 1024      # elements per program for pointwise and data-movement kernels
LOOPED_RBLOCK = 1024        # chunk of the reduced extent per loop iteration
REDUCTION_TILE = 4096       # XBLOCK * RBLOCK upper bound, keeps register use bounded
ELEMENTS_PER_THREAD = 16    # measured on the H100 (bf16 softmax/norms/gelu at 4096 wide): 8 was 5-15% slower


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


def choose_launch(kind: str, xnumel: sympy.Expr, rnumel: sympy.Expr | None = None) -> LaunchConfig:
    """The launch configuration of a kernel of `kind` ("pointwise" or "reduction") over `xnumel`
    output elements (and `rnumel` reduced elements per output)."""
    if kind == "reduction":
        return reduction_config(xnumel, rnumel)
    return pointwise_config(xnumel)
