"""canonicalize: constant folding plus exact algebraic and view simplifications, to a fixpoint.

The rules live in small tables (constant_fold.py, rules_arith.py, rules_views.py); this pass
applies them with the rewrite driver (rewrite.py). Every rule is exactly value-preserving, IEEE
corner cases included; rules_arith.py says why each one is. Stats count firings per rule.
Ops the rules leave unused stay in the graph: run dce after (the default pipeline does).
"""
from __future__ import annotations

from ..ir import Graph
from .constant_fold import fold_constant
from .context import PassContext
from .registry import PassResult, graph_pass
from .rewrite import apply_rules
from .rules_arith import ARITH_RULES
from .rules_views import VIEW_RULES

# Folding first: an op of constants becomes a constant even if another rule also matches it.
CANONICALIZE_RULES = (fold_constant, *ARITH_RULES, *VIEW_RULES)


@graph_pass("canonicalize", options={}, description="fold constants; drop ops that are exact no-ops; compose view chains")
def canonicalize(g: Graph, ctx: PassContext) -> PassResult:
    stats = apply_rules(g, CANONICALIZE_RULES)
    return PassResult(changed=bool(stats), stats=stats)
