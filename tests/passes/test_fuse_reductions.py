"""fuse with reductions: prologues, epilogues (softmax, layer_norm, RMSNorm) and horizontal fusion;
golden IR for the decisions, including the pairs that must stay apart."""
from ember.ir import parse
from ember.passes import run_pipeline

from pass_testing import assert_same_values, run_golden


def _rejected(rec) -> list[tuple[str, str, str]]:
    return [(r["producer"], r["consumer"], r["reason"]) for r in rec.details["rejected"]]


def test_softmax_is_one_region():
    rec = run_golden("fuse", """
        func @f[s0](%x: bf16[s0,64]) -> (bf16[s0,64]) {
          %0: f32[s0,64] = cast[dtype="f32"] %x
          %1: f32[s0,1] = reduce_max[axes=(1,), keepdim=True] %0
          %2: f32[s0,64] = sub %0, %1
          %3: f32[s0,64] = exp %2
          %4: f32[s0,1] = reduce_sum[axes=(1,), keepdim=True] %3
          %5: f32[s0,64] = div %3, %4
          %6: bf16[s0,64] = cast[dtype="bf16"] %5
          return %6
        }
        """, """
        func @f[s0](%x: bf16[s0,64]) -> (bf16[s0,64]) [device="cpu"] {
          %0: bf16[s0,64] = fused[name="fused0"] %x {
            ^(%in0: bf16[s0,64]):
            %0: f32[s0,64] = cast[dtype="f32"] %in0
            %1: f32[s0,1] = reduce_max[axes=(1,), keepdim=True] %0
            %2: f32[s0,64] = sub %0, %1
            %3: f32[s0,64] = exp %2
            %4: f32[s0,1] = reduce_sum[axes=(1,), keepdim=True] %3
            %5: f32[s0,64] = div %3, %4
            %6: bf16[s0,64] = cast[dtype="bf16"] %5
            yield %6
          }
          return %0
        }
        """)
    assert rec.stats["regions"] == 1 and rec.stats["ops_fused"] == 7
    assert _rejected(rec) == []


def test_layer_norm_statistics_and_affine_epilogue_are_one_region():
    run_golden("fuse", """
        func @f(%x: f32[4,8], %w: f32[8], %b: f32[8]) -> (f32[4,8], f32[4,1]) {
          %0: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %x
          %1: f32[] = full[value=8.0]
          %2: f32[4,1] = div %0, %1
          %3: f32[4,8] = sub %x, %2
          %4: f32[4,8] = mul %3, %3
          %5: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %4
          %6: f32[4,1] = div %5, %1
          %7: f32[] = full[value=1e-05]
          %8: f32[4,1] = add %6, %7
          %9: f32[4,1] = rsqrt %8
          %10: f32[4,8] = mul %3, %9
          %11: f32[4,8] = mul %10, %w
          %12: f32[4,8] = add %11, %b
          return %12, %9
        }
        """, """
        func @f(%x: f32[4,8], %w: f32[8], %b: f32[8]) -> (f32[4,8], f32[4,1]) [device="cpu"] {
          %0: f32[4,1], %1: f32[4,8] = fused[name="fused0"] %x, %w, %b {
            ^(%in0: f32[4,8], %in1: f32[8], %in2: f32[8]):
            %0: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %in0
            %1: f32[] = full[value=8.0]
            %2: f32[4,1] = div %0, %1
            %3: f32[4,8] = sub %in0, %2
            %4: f32[4,8] = mul %3, %3
            %5: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %4
            %6: f32[4,1] = div %5, %1
            %7: f32[] = full[value=1e-05]
            %8: f32[4,1] = add %6, %7
            %9: f32[4,1] = rsqrt %8
            %10: f32[4,8] = mul %3, %9
            %11: f32[4,8] = mul %10, %in1
            %12: f32[4,8] = add %11, %in2
            yield %9, %12
          }
          return %1, %0
        }
        """)


def test_reduction_result_with_dims_dropped_does_not_feed_a_full_op():
    # %1 is [4] (one value per row, reduced dim dropped): `add %x, %1` broadcasts it along the
    # *last* dim, which is not a per-row read. The two must stay apart.
    rec = run_golden("fuse", """
        func @f(%x: f32[4,4]) -> (f32[4,4]) {
          %0: f32[4,4] = exp %x
          %1: f32[4] = reduce_sum[axes=(1,), keepdim=False] %0
          %2: f32[4,4] = add %x, %1
          return %2
        }
        """, """
        func @f(%x: f32[4,4]) -> (f32[4,4]) [device="cpu"] {
          %0: f32[4] = fused[name="fused0"] %x {
            ^(%in0: f32[4,4]):
            %0: f32[4,4] = exp %in0
            %1: f32[4] = reduce_sum[axes=(1,), keepdim=False] %0
            yield %1
          }
          %1: f32[4,4] = add %x, %0
          return %1
        }
        """)
    assert _rejected(rec) == [("%1 = reduce_sum", "%2 = add", "role-mismatch")]


def test_reductions_over_different_axes_do_not_share_a_kernel():
    rec = run_golden("fuse", """
        func @f(%x: f32[4,8]) -> (f32[4,8]) {
          %0: f32[4,1] = reduce_max[axes=(1,), keepdim=True] %x
          %1: f32[4,8] = sub %x, %0
          %2: f32[1,8] = reduce_sum[axes=(0,), keepdim=True] %1
          %3: f32[4,8] = div %1, %2
          return %3
        }
        """, """
        func @f(%x: f32[4,8]) -> (f32[4,8]) [device="cpu"] {
          %0: f32[4,8] = fused[name="fused0"] %x {
            ^(%in0: f32[4,8]):
            %0: f32[4,1] = reduce_max[axes=(1,), keepdim=True] %in0
            %1: f32[4,8] = sub %in0, %0
            yield %1
          }
          %1: f32[4,8] = fused[name="fused1"] %0 {
            ^(%in0: f32[4,8]):
            %0: f32[1,8] = reduce_sum[axes=(0,), keepdim=True] %in0
            %1: f32[4,8] = div %in0, %0
            yield %1
          }
          return %1
        }
        """)
    reasons = _rejected(rec)
    assert ("%1 = sub", "%2 = reduce_sum", "shape-mismatch") in reasons, reasons


def test_independent_groups_reading_the_same_input_merge_horizontally():
    rec = run_golden("fuse", """
        func @f(%x: f32[4,8], %y: f32[4,8]) -> (f32[4,1], f32[4,1], f32[4,8]) {
          %0: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %x
          %1: f32[4,8] = mul %x, %x
          %2: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %1
          %3: f32[4,8] = add %x, %y
          return %0, %2, %3
        }
        """, """
        func @f(%x: f32[4,8], %y: f32[4,8]) -> (f32[4,1], f32[4,1], f32[4,8]) [device="cpu"] {
          %0: f32[4,1], %1: f32[4,1], %2: f32[4,8] = fused[name="fused0"] %x, %y {
            ^(%in0: f32[4,8], %in1: f32[4,8]):
            %0: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %in0
            %1: f32[4,8] = mul %in0, %in0
            %2: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %1
            %3: f32[4,8] = add %in0, %in1
            yield %0, %2, %3
          }
          return %0, %1, %2
        }
        """)
    assert rec.stats["regions"] == 1


def test_groups_with_a_path_between_them_do_not_merge_horizontally():
    # Both read %x, but the second reads the first's value through a matmul: one kernel would
    # have to run both before and after the matmul.
    run_golden("fuse", """
        func @f(%x: f32[4,4]) -> (f32[4,4]) {
          %0: f32[4,4] = exp %x
          %1: f32[4,4] = matmul %0, %0
          %2: f32[4,4] = add %x, %1
          return %2
        }
        """, None)


def test_size_cap_splits_a_long_chain():
    from ember.passes import fuse_groups
    lines = [f"  %{i}: f32[4] = neg %{i - 1 if i else 'x'}" for i in range(fuse_groups.MAX_GROUP_OPS + 5)]
    last = fuse_groups.MAX_GROUP_OPS + 4
    g = parse("func @f(%x: f32[4]) -> (f32[4]) {\n" + "\n".join(lines) + f"\n  return %{last}\n}}\n")
    before = g.copy()
    rec = run_pipeline(g, "fuse")["fuse"]
    assert rec.stats["regions"] == 2
    sizes = sorted(len(op.attrs["body"].ops) for op in g.ops if op.name == "fused")
    assert sizes == [5, fuse_groups.MAX_GROUP_OPS]
    assert [r["reason"] for r in rec.details["rejected"]] == ["kernel-size-cap"]
    assert_same_values(before, g, seeds=(0,))


def test_a_merge_that_makes_a_per_element_value_feed_a_row_op_is_refused():
    # In its own pointwise group, not(%m) ([1,8,1]) broadcasts into the [1,8,32] where. Joining
    # the reduction over axis 0 of [2,8,32] would make the where a row op fed by a per-element
    # value: the two stay apart (found in GPT-2's embedding backward).
    rec = run_golden("fuse", """
        func @f(%x: f32[2,8,32], %m: b1[1,8,1]) -> (f32[1,8,32]) {
          %0: f32[1,8,32] = reduce_sum[axes=(0,), keepdim=True] %x
          %1: b1[1,8,1] = bitwise_not %m
          %2: f32[] = full[value=0.0]
          %3: f32[1,8,32] = where %1, %2, %0
          return %3
        }
        """, """
        func @f(%x: f32[2,8,32], %m: b1[1,8,1]) -> (f32[1,8,32]) [device="cpu"] {
          %0: f32[1,8,32] = reduce_sum[axes=(0,), keepdim=True] %x
          %1: f32[1,8,32] = fused[name="fused0"] %m, %0 {
            ^(%in0: b1[1,8,1], %in1: f32[1,8,32]):
            %0: b1[1,8,1] = bitwise_not %in0
            %1: f32[] = full[value=0.0]
            %2: f32[1,8,32] = where %0, %1, %in1
            yield %2
          }
          return %1
        }
        """)
    assert ("%0 = reduce_sum", "%3 = where", "role-mismatch") in _rejected(rec), _rejected(rec)
