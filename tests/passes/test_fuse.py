"""fuse: pointwise producer-consumer chains become `fused` regions; golden IR plus values."""
import pytest

from ember.ir import parse, print_graph, verify
from ember.passes import run_pipeline

from pass_testing import assert_same_values, run_golden
from random_graphs import random_graph

_FUSED: list[int] = []


def _rejected(rec) -> list[tuple[str, str, str]]:
    """The fusion report's rejected pairs as (producer, consumer, reason code)."""
    return [(r["producer"], r["consumer"], r["reason"]) for r in rec.details["rejected"]]


def test_fuses_a_pointwise_chain_with_broadcast_input_and_constant():
    rec = run_golden("fuse", """
        func @f[s0](%x: f32[s0,128], %b: f32[128]) -> (f32[s0,128]) {
          %0: f32[] = full[value=0.5]
          %1: f32[s0,128] = add %x, %b
          %2: f32[s0,128] = mul %1, %0
          %3: f32[s0,128] = relu %2
          return %3
        }
        """, """
        func @f[s0](%x: f32[s0,128], %b: f32[128]) -> (f32[s0,128]) [device="cpu"] {
          %0: f32[s0,128] = fused[name="fused0"] %x, %b {
            ^(%in0: f32[s0,128], %in1: f32[128]):
            %0: f32[s0,128] = add %in0, %in1
            %1: f32[] = full[value=0.5]
            %2: f32[s0,128] = mul %0, %1
            %3: f32[s0,128] = relu %2
            yield %3
          }
          return %0
        }
        """)
    assert rec.stats == {"regions": 1, "ops_fused": 3, "bytes_saved": 2 * 2 * 1024 * 128 * 4}  # s0 counts as 1024
    assert _rejected(rec) == []  # the constant is copied in, not a candidate pair


def test_smaller_producer_is_recomputed_per_element_when_private():
    # exp over [s0] feeds only the [4,s0] add: it joins the region and runs once per element.
    run_golden("fuse", """
        func @f[s0](%x: f32[s0], %y: f32[4,s0]) -> (f32[4,s0]) {
          %0: f32[s0] = exp %x
          %1: f32[4,s0] = add %0, %y
          return %1
        }
        """, """
        func @f[s0](%x: f32[s0], %y: f32[4,s0]) -> (f32[4,s0]) [device="cpu"] {
          %0: f32[4,s0] = fused[name="fused0"] %x, %y {
            ^(%in0: f32[s0], %in1: f32[4,s0]):
            %0: f32[s0] = exp %in0
            %1: f32[4,s0] = add %0, %in1
            yield %1
          }
          return %0
        }
        """)


def test_smaller_producer_needed_outside_does_not_fuse():
    rec = run_golden("fuse", """
        func @f[s0](%x: f32[s0], %y: f32[4,s0]) -> (f32[4,s0], f32[s0]) {
          %0: f32[s0] = exp %x
          %1: f32[4,s0] = add %0, %y
          return %1, %0
        }
        """, None)
    assert rec.stats == {"regions": 0, "ops_fused": 0, "bytes_saved": 0}
    assert _rejected(rec) == [("%0 = exp", "%1 = add", "shape-mismatch")]
    assert rec.details["rejected"][0]["detail"] == (
        "%0 = exp is smaller than [4,s0] and would be recomputed per element, but its value is also needed outside")


def test_column_sums_do_not_feed_back_per_element():
    # A reduction over dim 0 gives one value per *column*; the rows of this domain are columns,
    # so `mul %0, %2` would need that value per element of a row: it stays outside.
    rec = run_golden("fuse", """
        func @f[s0](%x: f32[s0,4], %y: f32[4]) -> (f32[s0,4]) {
          %0: f32[s0,4] = exp %x
          %1: f32[4] = reduce_sum[axes=(0,), keepdim=False] %0
          %2: f32[4] = add %1, %y
          %3: f32[s0,4] = mul %0, %2
          return %3
        }
        """, """
        func @f[s0](%x: f32[s0,4], %y: f32[4]) -> (f32[s0,4]) [device="cpu"] {
          %0: f32[s0,4], %1: f32[4] = fused[name="fused0"] %x, %y {
            ^(%in0: f32[s0,4], %in1: f32[4]):
            %0: f32[s0,4] = exp %in0
            %1: f32[4] = reduce_sum[axes=(0,), keepdim=False] %0
            %2: f32[4] = add %1, %in1
            yield %0, %2
          }
          %2: f32[s0,4] = mul %0, %1
          return %2
        }
        """)
    assert ("%2 = add", "%3 = mul", "role-mismatch") in _rejected(rec), _rejected(rec)


def test_no_fusion_through_an_outside_op_that_would_make_a_cycle():
    # %0 -> matmul -> %2 and %0 -> %2: fusing %0 with %2 would need the matmul both before and
    # after the region. Only the cycle-free part fuses.
    rec = run_golden("fuse", """
        func @f(%x: f32[4,4]) -> (f32[4,4]) {
          %0: f32[4,4] = exp %x
          %1: f32[4,4] = matmul %0, %x
          %2: f32[4,4] = add %0, %1
          %3: f32[4,4] = relu %2
          return %3
        }
        """, """
        func @f(%x: f32[4,4]) -> (f32[4,4]) [device="cpu"] {
          %0: f32[4,4] = exp %x
          %1: f32[4,4] = matmul %0, %x
          %2: f32[4,4] = fused[name="fused0"] %0, %1 {
            ^(%in0: f32[4,4], %in1: f32[4,4]):
            %0: f32[4,4] = add %in0, %in1
            %1: f32[4,4] = relu %0
            yield %1
          }
          return %2
        }
        """)
    assert _rejected(rec) == [("%0 = exp", "%1 = matmul", "not-fusible-op"),
                              ("%0 = exp", "%2 = add", "would-create-cycle"),
                              ("%1 = matmul", "%2 = add", "not-fusible-op")]
    assert "through %1 = matmul" in rec.details["rejected"][1]["detail"]


def test_region_moves_past_an_independent_op_to_stay_in_order():
    # neg(%x) is between the two exps but independent of the chain: the graph is re-ordered.
    run_golden("fuse", """
        func @f(%x: f32[4], %y: f32[8]) -> (f32[4], f32[8]) {
          %0: f32[4] = exp %x
          %1: f32[8] = neg %y
          %2: f32[8] = cos %1
          %3: f32[4] = sin %0
          return %3, %2
        }
        """, """
        func @f(%x: f32[4], %y: f32[8]) -> (f32[4], f32[8]) [device="cpu"] {
          %0: f32[8] = fused[name="fused0"] %y {
            ^(%in0: f32[8]):
            %0: f32[8] = neg %in0
            %1: f32[8] = cos %0
            yield %1
          }
          %1: f32[4] = fused[name="fused1"] %x {
            ^(%in0: f32[4]):
            %0: f32[4] = exp %in0
            %1: f32[4] = sin %0
            yield %1
          }
          return %1, %0
        }
        """)


def test_values_an_extern_writes_are_not_fused():
    rec = run_golden("fuse", """
        func @f(%x: f32[4], %y: f32[4]) -> (f32[4]) {
          %0: f32[4] = neg %y
          %1: f32[4] = extern[target="aten.copy_.default", args=[#0, #1]] %x, %0
          %2: f32[4] = exp %x
          return %2
        }
        """, None)
    assert _rejected(rec) == [("%0 = neg", "%1 = extern[aten.copy_.default]", "not-fusible-op")]


def test_a_value_an_extern_writes_is_reported_as_the_reason():
    rec = run_golden("fuse", """
        func @f(%x: f32[4], %y: f32[4]) -> (f32[4]) {
          %0: f32[4] = neg %y
          %1: f32[4] = extern[target="aten.copy_.default", args=[#0, #1]] %0, %x
          %2: f32[4] = exp %0
          return %2
        }
        """, None)
    assert ("%0 = neg", "%2 = exp", "written-by-extern") in _rejected(rec)


@pytest.mark.parametrize("seed", range(40))
def test_fuse_keeps_values_on_random_graphs(seed):
    g = random_graph(seed)
    run_pipeline(g, "canonicalize,cse,dce")
    before = g.copy()
    report = run_pipeline(g, "fuse")
    verify(g)
    text = print_graph(g)
    assert print_graph(parse(text)) == text
    assert_same_values(before, g, seeds=(seed, seed + 1000))
    _FUSED.append(report["fuse"].stats["regions"])


def test_random_graphs_do_fuse():
    if not _FUSED:
        pytest.skip("run together with test_fuse_keeps_values_on_random_graphs")
    assert sum(_FUSED) > 10, _FUSED


def test_pointwise_prologue_joins_its_reduction():
    rec = run_golden("fuse", """
        func @f[s0](%x: f32[s0,8], %b: f32[8]) -> (f32[s0]) {
          %0: f32[s0,8] = sub %x, %b
          %1: f32[s0,8] = mul %0, %0
          %2: f32[s0] = reduce_sum[axes=(1,), keepdim=False] %1
          return %2
        }
        """, """
        func @f[s0](%x: f32[s0,8], %b: f32[8]) -> (f32[s0]) [device="cpu"] {
          %0: f32[s0] = fused[name="fused0"] %x, %b {
            ^(%in0: f32[s0,8], %in1: f32[8]):
            %0: f32[s0,8] = sub %in0, %in1
            %1: f32[s0,8] = mul %0, %0
            %2: f32[s0] = reduce_sum[axes=(1,), keepdim=False] %1
            yield %2
          }
          return %0
        }
        """)
    assert rec.stats == {"regions": 1, "ops_fused": 3, "bytes_saved": 2 * 2 * 1024 * 8 * 4}  # s0 counts as 1024
    assert _rejected(rec) == []




def test_a_concat_fuses_with_its_readers_not_its_producers():
    # The concat reads its pieces at shifted positions, so they come from memory: the neg stays a
    # kernel (its [2,1] would broadcast into [2,4], but not at the shifted position); the concat
    # joins the mul that reads it.
    rec = run_golden("fuse", """
        func @f(%a: f32[2,1], %b: f32[2,3], %x: f32[2,4]) -> (f32[2,4]) {
          %0: f32[2,1] = neg %a
          %1: f32[2,4] = concat[dim=1] %0, %b
          %2: f32[2,4] = mul %1, %x
          return %2
        }
        """, """
        func @f(%a: f32[2,1], %b: f32[2,3], %x: f32[2,4]) -> (f32[2,4]) [device="cpu"] {
          %0: f32[2,1] = neg %a
          %1: f32[2,4] = fused[name="fused0"] %0, %b, %x {
            ^(%in0: f32[2,1], %in1: f32[2,3], %in2: f32[2,4]):
            %0: f32[2,4] = concat[dim=1] %in0, %in1
            %1: f32[2,4] = mul %0, %in2
            yield %1
          }
          return %1
        }
        """)
    assert _rejected(rec) == [("%0 = neg", "%1 = concat", "shape-mismatch")]
    assert "shifted positions" in rec.details["rejected"][0]["detail"]


def test_a_concat_stays_out_of_reducing_kernels():
    rec = run_golden("fuse", """
        func @f(%x: f32[2,4], %y: f32[2,4]) -> (f32[2]) {
          %0: f32[2,8] = concat[dim=1] %x, %y
          %1: f32[2] = reduce_sum[axes=(1,), keepdim=False] %0
          return %1
        }
        """, None)
    assert _rejected(rec) == [("%0 = concat", "%1 = reduce_sum", "shape-mismatch")]


def test_a_small_iota_joins_a_pointwise_kernel_but_not_a_reducing_one():
    # The [1,4,1] iota broadcasts into [2,4,3]: a pointwise kernel aligns its dim. A row kernel
    # takes only iotas of its full shape, so the reduction stays outside.
    rec = run_golden("fuse", """
        func @f(%x: f32[2,4,3]) -> (f32[2,4,3], f32[2,4]) {
          %0: i64[1,4,1] = iota[dim=1]
          %1: f32[1,4,1] = cast[dtype="f32"] %0
          %2: f32[2,4,3] = mul %x, %1
          %3: f32[2,4] = reduce_sum[axes=(2,), keepdim=False] %2
          return %2, %3
        }
        """, """
        func @f(%x: f32[2,4,3]) -> (f32[2,4,3], f32[2,4]) [device="cpu"] {
          %0: f32[2,4,3] = fused[name="fused0"] %x {
            ^(%in0: f32[2,4,3]):
            %0: i64[1,4,1] = iota[dim=1]
            %1: f32[1,4,1] = cast[dtype="f32"] %0
            %2: f32[2,4,3] = mul %in0, %1
            yield %2
          }
          %1: f32[2,4] = reduce_sum[axes=(2,), keepdim=False] %0
          return %0, %1
        }
        """)
    assert ("%2 = mul", "%3 = reduce_sum", "shape-mismatch") in _rejected(rec)


def test_copies_of_slices_of_one_buffer_share_a_kernel():
    # The keys and values a model returns, copied out of one QKV product: no byte is read twice,
    # but one kernel writes both. A copy of another buffer's slice stays apart.
    rec = run_golden("fuse", """
        func @f(%x: f32[4,6], %y: f32[4,2]) -> (f32[2,4], f32[2,4], f32[4,2]) {
          %0: f32[4,6] = exp %x
          %1: f32[4,2] = slice[dim=1, end=4, start=2, step=1] %0
          %2: f32[2,4] = permute[dims=(1, 0)] %1
          %3: f32[2,4] = copy %2
          %4: f32[4,2] = slice[dim=1, end=6, start=4, step=1] %0
          %5: f32[2,4] = permute[dims=(1, 0)] %4
          %6: f32[2,4] = copy %5
          %7: f32[4,2] = slice[dim=1, end=2, start=0, step=1] %y
          %8: f32[4,2] = copy %7
          return %3, %6, %8
        }
        """, """
        func @f(%x: f32[4,6], %y: f32[4,2]) -> (f32[2,4], f32[2,4], f32[4,2]) [device="cpu"] {
          %0: f32[4,6] = exp %x
          %1: f32[4,2] = slice[dim=1, end=4, start=2, step=1] %0
          %2: f32[2,4] = permute[dims=(1, 0)] %1
          %3: f32[4,2] = slice[dim=1, end=6, start=4, step=1] %0
          %4: f32[2,4] = permute[dims=(1, 0)] %3
          %5: f32[2,4], %6: f32[2,4] = fused[name="fused0"] %2, %4 {
            ^(%in0: f32[2,4], %in1: f32[2,4]):
            %0: f32[2,4] = copy %in0
            %1: f32[2,4] = copy %in1
            yield %0, %1
          }
          %7: f32[4,2] = slice[dim=1, end=2, start=0, step=1] %y
          %8: f32[4,2] = copy %7
          return %5, %6, %8
        }
        """)
    assert rec.stats["regions"] == 1
