"""hoist_views: size-1 reshapes move above pointwise chains toward the inputs; golden IR,
the cases it must leave alone, and values (the interpreter before and after)."""
import pytest

from ember.ir import parse, print_graph, verify
from ember.passes import run_pipeline

from pass_testing import assert_same_values, run_golden, shared_buffers
from random_graphs import random_graph

# Eval BatchNorm as the frontend lowers it (after canonicalize): per-channel statistics on [8],
# unsqueezed to [8,1,1] to broadcast over [2,8,6,6].
BATCH_NORM = """
    func @f(%x: f32[2,8,6,6], %mean: f32[8], %var: f32[8], %w: f32[8], %b: f32[8]) -> (f32[2,8,6,6]) {
      %0: f32[] = full[value=1e-05]
      %1: f32[8] = add %var, %0
      %2: f32[8] = sqrt %1
      %3: f32[8] = reciprocal %2
      %4: f32[8,1,1] = reshape[shape=(8, 1, 1)] %mean
      %5: f32[8,1,1] = reshape[shape=(8, 1, 1)] %3
      %6: f32[2,8,6,6] = sub %x, %4
      %7: f32[2,8,6,6] = mul %6, %5
      %8: f32[8,1,1] = reshape[shape=(8, 1, 1)] %w
      %9: f32[2,8,6,6] = mul %7, %8
      %10: f32[8,1,1] = reshape[shape=(8, 1, 1)] %b
      %11: f32[2,8,6,6] = add %9, %10
      %12: f32[2,8,6,6] = relu %11
      return %12
    }
    """


def test_batch_norm_statistics_move_below_the_reshape():
    rec = run_golden("hoist_views", BATCH_NORM, """
        func @f(%x: f32[2,8,6,6], %mean: f32[8], %var: f32[8], %w: f32[8], %b: f32[8]) -> (f32[2,8,6,6]) [device="cpu"] {
          %0: f32[] = full[value=1e-05]
          %1: f32[8,1,1] = reshape[shape=(8, 1, 1)] %var
          %2: f32[8,1,1] = add %1, %0
          %3: f32[8,1,1] = sqrt %2
          %4: f32[8,1,1] = reciprocal %3
          %5: f32[8,1,1] = reshape[shape=(8, 1, 1)] %mean
          %6: f32[2,8,6,6] = sub %x, %5
          %7: f32[2,8,6,6] = mul %6, %4
          %8: f32[8,1,1] = reshape[shape=(8, 1, 1)] %w
          %9: f32[2,8,6,6] = mul %7, %8
          %10: f32[8,1,1] = reshape[shape=(8, 1, 1)] %b
          %11: f32[2,8,6,6] = add %9, %10
          %12: f32[2,8,6,6] = relu %11
          return %12
        }
        """)
    assert rec.stats == {"hoisted": 3, "keepdim": 0, "iota": 0, "unnegated": 0}


def test_batch_norm_is_one_kernel_in_the_default_pipeline():
    g = parse(BATCH_NORM)
    before = g.copy()
    report = run_pipeline(g, "canonicalize,cse,dce,hoist_views,fuse")
    assert [op.name for op in g.ops if op.name not in ("reshape",)] == ["fused"]
    assert report["fuse"].stats["regions"] == 1
    assert_same_values(before, g)


def test_operands_that_broadcast_get_the_same_dims_and_constants_stay_constants():
    # %b broadcasts over %x's rows: it becomes [1,3,1], its 3 where the result's goes. The 0-d
    # constant already broadcasts; the [2,3] constant becomes a [2,3,1] constant, not a view of one.
    run_golden("hoist_views", """
        func @f(%x: f32[2,3], %b: f32[3], %y: f32[2,3,4]) -> (f32[2,3,4]) {
          %0: f32[] = full[value=2.0]
          %1: f32[2,3] = full[value=0.5]
          %2: f32[2,3] = add %x, %b
          %3: f32[2,3] = mul %2, %0
          %4: f32[2,3] = sub %3, %1
          %5: f32[2,3,1] = reshape[shape=(2, 3, 1)] %4
          %6: f32[2,3,4] = mul %y, %5
          return %6
        }
        """, """
        func @f(%x: f32[2,3], %b: f32[3], %y: f32[2,3,4]) -> (f32[2,3,4]) [device="cpu"] {
          %0: f32[] = full[value=2.0]
          %1: f32[2,3,1] = reshape[shape=(2, 3, 1)] %x
          %2: f32[1,3,1] = reshape[shape=(1, 3, 1)] %b
          %3: f32[2,3,1] = add %1, %2
          %4: f32[2,3,1] = mul %3, %0
          %5: f32[2,3,1] = full[value=0.5]
          %6: f32[2,3,1] = sub %4, %5
          %7: f32[2,3,4] = mul %y, %6
          return %7
        }
        """)


def test_removing_size_one_dims_and_symbolic_sizes():
    # [1,s0,1] -> [s0]: dims are compared with sympy; a reshape of a reshape becomes one view.
    run_golden("hoist_views", """
        func @f[s0](%x: f32[s0], %y: f32[4,s0]) -> (f32[4,s0]) {
          %0: f32[1,s0,1] = reshape[shape=(1, s0, 1)] %x
          %1: f32[1,s0,1] = exp %0
          %2: f16[1,s0,1] = cast[dtype="f16"] %1
          %3: f32[1,s0,1] = cast[dtype="f32"] %2
          %4: f32[s0] = reshape[shape=(s0,)] %3
          %5: f32[4,s0] = add %4, %y
          return %5
        }
        """, """
        func @f[s0](%x: f32[s0], %y: f32[4,s0]) -> (f32[4,s0]) [device="cpu"] {
          %0: f32[1,s0,1] = reshape[shape=(1, s0, 1)] %x
          %1: f32[s0] = exp %x
          %2: f16[s0] = cast[dtype="f16"] %1
          %3: f32[s0] = cast[dtype="f32"] %2
          %4: f32[4,s0] = add %3, %y
          return %4
        }
        """)


def test_a_dropping_reduction_takes_the_reshape_as_keepdim():
    # mean over the last dim, unsqueezed back: keepdim=True lets fuse make one row kernel of it.
    rec = run_golden("hoist_views", """
        func @f(%x: f32[4,8]) -> (f32[4,8]) {
          %0: f32[4] = reduce_sum[axes=(1,), keepdim=False] %x
          %1: f32[] = full[value=8.0]
          %2: f32[4] = div %0, %1
          %3: f32[4,1] = reshape[shape=(4, 1)] %2
          %4: f32[4,8] = sub %x, %3
          return %4
        }
        """, """
        func @f(%x: f32[4,8]) -> (f32[4,8]) [device="cpu"] {
          %0: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %x
          %1: f32[] = full[value=8.0]
          %2: f32[4,1] = div %0, %1
          %3: f32[4,8] = sub %x, %2
          return %3
        }
        """)
    assert rec.stats == {"hoisted": 1, "keepdim": 1, "iota": 0, "unnegated": 0}


def test_reduction_keeps_its_form_when_the_reshape_puts_dims_elsewhere():
    # [4] from reducing axis 1 of [4,8], reshaped to [1,4]: not the keepdim shape [4,1].
    run_golden("hoist_views", """
        func @f(%x: f32[4,8], %y: f32[3,4]) -> (f32[3,4]) {
          %0: f32[4] = reduce_sum[axes=(1,), keepdim=False] %x
          %1: f32[1,4] = reshape[shape=(1, 4)] %0
          %2: f32[3,4] = mul %y, %1
          return %2
        }
        """, None)


def test_a_transpose_moves_above_a_cast_that_then_joins_its_reader():
    # Attention math in bf16: K is cast to f32, transposed for the scores and scaled. Moved
    # above the cast, the permute leaves cast and scale adjacent (one kernel under fuse); a
    # permute of a permute is composed into one.
    run_golden("hoist_views", """
        func @f(%x: bf16[2,8,4,16]) -> (f32[2,4,16,8]) {
          %0: bf16[2,4,8,16] = permute[dims=(0, 2, 1, 3)] %x
          %1: f32[2,4,8,16] = cast[dtype="f32"] %0
          %2: f32[2,4,16,8] = permute[dims=(0, 1, 3, 2)] %1
          %3: f32[] = full[value=0.5]
          %4: f32[2,4,16,8] = mul %2, %3
          return %4
        }
        """, """
        func @f(%x: bf16[2,8,4,16]) -> (f32[2,4,16,8]) [device="cpu"] {
          %0: bf16[2,4,8,16] = permute[dims=(0, 2, 1, 3)] %x
          %1: bf16[2,4,16,8] = permute[dims=(0, 2, 3, 1)] %x
          %2: f32[2,4,16,8] = cast[dtype="f32"] %1
          %3: f32[] = full[value=0.5]
          %4: f32[2,4,16,8] = mul %2, %3
          return %4
        }
        """)


def test_a_permute_the_reshape_after_it_would_copy_moves_above_the_cast():
    # heads -> hidden: the reshape cannot view the permuted layout, so the wrapper would copy.
    # Moved, the cast reads permuted and writes the layout the reshape views.
    rec = run_golden("hoist_views", """
        func @f(%x: f32[2,4,16,8]) -> (bf16[32,32]) {
          %0: bf16[2,4,16,8] = cast[dtype="bf16"] %x
          %1: bf16[2,16,4,8] = permute[dims=(0, 2, 1, 3)] %0
          %2: bf16[32,32] = reshape[shape=(32, 32)] %1
          return %2
        }
        """, """
        func @f(%x: f32[2,4,16,8]) -> (bf16[32,32]) [device="cpu"] {
          %0: f32[2,16,4,8] = permute[dims=(0, 2, 1, 3)] %x
          %1: bf16[2,16,4,8] = cast[dtype="bf16"] %0
          %2: bf16[32,32] = reshape[shape=(32, 32)] %1
          return %2
        }
        """)
    assert rec.stats == {"hoisted": 1, "keepdim": 0, "iota": 0, "unnegated": 0}


def test_a_permute_gives_a_broadcast_operand_its_own_view():
    # %b: [4] broadcast over [2,3,4]; permuted to [4,2,3] it is [4,1,1] (its only non-1 dim
    # keeps its place: a reshape); %c: [3,4] becomes a permute of [1,3,4].
    run_golden("hoist_views", """
        func @f(%x: f32[2,3,4], %b: f32[4], %c: f32[3,4], %y: f32[4,2,3]) -> (f32[4,2,3]) {
          %0: f32[2,3,4] = add %x, %b
          %1: f32[2,3,4] = mul %0, %c
          %2: f32[4,2,3] = permute[dims=(2, 0, 1)] %1
          %3: f32[4,2,3] = sub %2, %y
          return %3
        }
        """, """
        func @f(%x: f32[2,3,4], %b: f32[4], %c: f32[3,4], %y: f32[4,2,3]) -> (f32[4,2,3]) [device="cpu"] {
          %0: f32[4,2,3] = permute[dims=(2, 0, 1)] %x
          %1: f32[4,1,1] = reshape[shape=(4, 1, 1)] %b
          %2: f32[4,2,3] = add %0, %1
          %3: f32[1,3,4] = reshape[shape=(1, 3, 4)] %c
          %4: f32[4,1,3] = permute[dims=(2, 0, 1)] %3
          %5: f32[4,2,3] = mul %2, %4
          %6: f32[4,2,3] = sub %5, %y
          return %6
        }
        """)


def test_grouped_query_keys_are_computed_repeated():
    # repeat_kv after a pointwise op on K: size-1 reshape, expand, then a reshape that cannot
    # view the expanded layout (the wrapper would copy). Both views move above exp; the final
    # reshape then views exp's result.
    rec = run_golden("hoist_views", """
        func @f(%k: f32[1,2,3,4]) -> (f32[1,4,3,4]) {
          %0: f32[1,2,3,4] = exp %k
          %1: f32[1,2,1,3,4] = reshape[shape=(1, 2, 1, 3, 4)] %0
          %2: f32[1,2,2,3,4] = expand[shape=(1, 2, 2, 3, 4)] %1
          %3: f32[1,4,3,4] = reshape[shape=(1, 4, 3, 4)] %2
          return %3
        }
        """, """
        func @f(%k: f32[1,2,3,4]) -> (f32[1,4,3,4]) [device="cpu"] {
          %0: f32[1,2,1,3,4] = reshape[shape=(1, 2, 1, 3, 4)] %k
          %1: f32[1,2,2,3,4] = expand[shape=(1, 2, 2, 3, 4)] %0
          %2: f32[1,2,2,3,4] = exp %1
          %3: f32[1,4,3,4] = reshape[shape=(1, 4, 3, 4)] %2
          return %3
        }
        """)
    assert rec.stats == {"hoisted": 2, "keepdim": 0, "iota": 0, "unnegated": 0}


def test_an_iota_is_built_in_the_shape_it_is_read_in():
    # A position mask: iota over [4], unsqueezed and expanded to [2,4,3]. The iota then spans
    # the kernel that reads it (codegen needs an iota of the kernel's shape).
    rec = run_golden("hoist_views", """
        func @f(%x: f32[2,4,3]) -> (f32[2,4,3]) {
          %0: i64[4] = iota[dim=0]
          %1: i64[1,4,1] = reshape[shape=(1, 4, 1)] %0
          %2: i64[2,4,3] = expand[shape=(2, 4, 3)] %1
          %3: i64[] = full[value=2]
          %4: b1[2,4,3] = lt %2, %3
          %5: f32[] = full[value=0.0]
          %6: f32[2,4,3] = where %4, %x, %5
          return %6
        }
        """, """
        func @f(%x: f32[2,4,3]) -> (f32[2,4,3]) [device="cpu"] {
          %0: i64[2,4,3] = iota[dim=1]
          %1: i64[] = full[value=2]
          %2: b1[2,4,3] = lt %0, %1
          %3: f32[] = full[value=0.0]
          %4: f32[2,4,3] = where %2, %x, %3
          return %4
        }
        """)
    assert rec.stats == {"hoisted": 0, "keepdim": 0, "iota": 2, "unnegated": 0}


def test_a_view_of_an_iota_read_by_several_ops_is_an_iota_each():
    # Building an iota again costs nothing: a view read only by ops that can fuse it becomes one
    # iota per reader, so no two kernels share one; the view read by an index (which cannot
    # fuse it) keeps the shared iota.
    rec = run_golden("hoist_views", """
        func @f(%t: f32[4,8]) -> (i64[4,1,1], f32[1,4,8]) {
          %0: i64[4] = iota[dim=0]
          %1: i64[4,1,1] = reshape[shape=(4, 1, 1)] %0
          %2: i64[] = full[value=2]
          %3: b1[4,1,1] = lt %1, %2
          %4: i64[4,1,1] = add %1, %2
          %5: i64[4,1,1] = where %3, %4, %1
          %6: i64[1,4] = reshape[shape=(1, 4)] %0
          %7: f32[1,4,8] = index[dim=0] %t, %6
          return %5, %7
        }
        """, """
        func @f(%t: f32[4,8]) -> (i64[4,1,1], f32[1,4,8]) [device="cpu"] {
          %0: i64[4] = iota[dim=0]
          %1: i64[4,1,1] = iota[dim=0]
          %2: i64[4,1,1] = iota[dim=0]
          %3: i64[4,1,1] = iota[dim=0]
          %4: i64[] = full[value=2]
          %5: b1[4,1,1] = lt %1, %4
          %6: i64[4,1,1] = add %2, %4
          %7: i64[4,1,1] = where %5, %6, %3
          %8: i64[1,4] = reshape[shape=(1, 4)] %0
          %9: f32[1,4,8] = index[dim=0] %t, %8
          return %7, %9
        }
        """)
    assert rec.stats["iota"] == 1


def test_symbolic_permute():
    run_golden("hoist_views", """
        func @f[s0](%x: f32[s0,8], %y: f32[8,s0]) -> (f32[8,s0]) {
          %0: f32[s0,8] = neg %x
          %1: f32[8,s0] = permute[dims=(1, 0)] %0
          %2: f32[8,s0] = add %1, %y
          return %2
        }
        """, """
        func @f[s0](%x: f32[s0,8], %y: f32[8,s0]) -> (f32[8,s0]) [device="cpu"] {
          %0: f32[8,s0] = permute[dims=(1, 0)] %x
          %1: f32[8,s0] = neg %0
          %2: f32[8,s0] = add %1, %y
          return %2
        }
        """)


@pytest.mark.parametrize("case", [
    # The pointwise result has another reader: moving would compute it twice.
    """%0: f32[8] = exp %x
       %1: f32[8,1] = reshape[shape=(8, 1)] %0
       %2: f32[8,4] = mul %y, %1
       %3: f32[8] = neg %0
       return %2, %3""",
    # ... or is returned.
    """%0: f32[8] = exp %x
       %1: f32[8,1] = reshape[shape=(8, 1)] %0
       %2: f32[8,4] = mul %y, %1
       return %2, %0""",
    # The reshape's result is returned, or read by something that is not pointwise (a matmul):
    # the moved chain would have nowhere to fuse.
    """%0: f32[8] = exp %x
       %1: f32[8,1] = reshape[shape=(8, 1)] %0
       %2: f32[8,4] = mul %y, %1
       return %2, %1""",
    """%0: f32[4] = exp %z
       %1: f32[1,4] = reshape[shape=(1, 4)] %0
       %2: f32[1,4] = matmul %1, %w
       return %2""",
    # The reshape's result has two readers.
    """%0: f32[8] = exp %x
       %1: f32[8,1] = reshape[shape=(8, 1)] %0
       %2: f32[8,4] = mul %y, %1
       %3: f32[8,4] = add %y, %1
       return %2, %3""",
    # Not a size-1 reshape: [8] -> [2,4] regroups elements.
    """%0: f32[8] = exp %x
       %1: f32[2,4] = reshape[shape=(2, 4)] %0
       %2: f32[2,4] = mul %1, %1
       return %2""",
    # A permute the reshape after it can view (splitting the last dim): nothing to gain.
    """%0: f32[8,4] = exp %y
       %1: f32[4,8] = permute[dims=(1, 0)] %0
       %2: f32[4,2,4] = reshape[shape=(4, 2, 4)] %1
       return %2""",
    # An expand read by a matmul: the moved chain would have nowhere to fuse.
    """%0: f32[8] = exp %x
       %1: f32[8,1] = reshape[shape=(8, 1)] %0
       %2: f32[8,4] = expand[shape=(8, 4)] %1
       %3: f32[8,4] = matmul %2, %w
       return %3""",
    # An operand an extern writes.
    """%0: f32[8] = exp %x
       %1: f32[8,1] = reshape[shape=(8, 1)] %0
       %2: f32[8,4] = mul %y, %1
       %3: f32[8] = extern[target="aten.copy_.default", args=[#0, #1]] %x, %x
       return %2, %3""",
])
def test_leaves_alone(case):
    body = "\n".join("  " + line.strip() for line in case.splitlines())
    outs = body.split("return")[1].strip()
    g = parse(f"func @f(%x: f32[8], %y: f32[8,4], %z: f32[4], %w: f32[4,4]) -> (...) {{\n{body}\n}}".replace(
        "(...)", "(" + ", ".join(_result_type(body, o.strip()) for o in outs.split(",")) + ")"))
    run_golden("hoist_views", print_graph(g), None, semantics="extern" not in case)


def _result_type(body: str, name: str) -> str:
    for line in body.splitlines():
        if line.strip().startswith(name + ":"):
            return line.split(":")[1].split("=")[0].strip()
    raise KeyError(name)


_FIRED: dict[str, int] = {}


@pytest.mark.parametrize("seed", range(100))
def test_keeps_values_on_random_graphs(seed):
    g = random_graph(seed)
    run_pipeline(g, "canonicalize,cse,dce")
    before = g.copy()
    report = run_pipeline(g, "hoist_views,fuse")
    for k, n in report["hoist_views"].stats.items():
        _FIRED[k] = _FIRED.get(k, 0) + n
    verify(g)
    text = print_graph(g)
    assert print_graph(parse(text)) == text
    assert shared_buffers(g) <= shared_buffers(before)
    assert_same_values(before, g, seeds=(seed, seed + 1000))


def test_random_graphs_exercise_the_pass():
    if not _FIRED:
        pytest.skip("run together with test_keeps_values_on_random_graphs")
    assert all(_FIRED[k] > 0 for k in ("hoisted", "keepdim", "iota", "unnegated")), _FIRED
