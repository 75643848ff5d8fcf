"""hoist_views on concats: rotary embedding's rotate_half, cat(-x2, x1), becomes a concat of
views times a pointwise sign, and views move through concats; golden IR, what stays, values."""
import pytest

from ember.ir import parse
from ember.passes import run_pipeline

from pass_testing import run_golden


def test_rotate_half_becomes_a_concat_of_views_times_a_sign():
    # cat(-x2, x1): the neg leaves the concat (x * -1 is -x exactly), so the concat reads only
    # views of x and fuse can put it in the kernel that reads it; the sign is a pointwise
    # function of the position.
    rec = run_golden("hoist_views", """
        func @f(%x: f32[2,3,8], %sin: f32[3,8]) -> (f32[2,3,8]) {
          %0: f32[2,3,4] = slice[dim=2, end=4, start=0, step=1] %x
          %1: f32[2,3,4] = slice[dim=2, end=8, start=4, step=1] %x
          %2: f32[2,3,4] = neg %1
          %3: f32[2,3,8] = concat[dim=2] %2, %0
          %4: f32[2,3,8] = mul %3, %sin
          return %4
        }
        """, """
        func @f(%x: f32[2,3,8], %sin: f32[3,8]) -> (f32[2,3,8]) [device="cpu"] {
          %0: f32[2,3,4] = slice[dim=2, end=4, start=0, step=1] %x
          %1: f32[2,3,4] = slice[dim=2, end=8, start=4, step=1] %x
          %2: f32[2,3,8] = concat[dim=2] %1, %0
          %3: i64[2,3,8] = iota[dim=2]
          %4: i64[] = full[value=4]
          %5: b1[2,3,8] = lt %3, %4
          %6: f32[] = full[value=-1.0]
          %7: f32[] = full[value=1.0]
          %8: f32[2,3,8] = where %5, %6, %7
          %9: f32[2,3,8] = mul %2, %8
          %10: f32[2,3,8] = mul %9, %sin
          return %10
        }
        """)
    assert rec.stats == {"hoisted": 0, "keepdim": 0, "iota": 0, "unnegated": 1}


def test_a_negated_middle_piece_is_bounded_on_both_sides():
    run_golden("hoist_views", """
        func @f(%a: f32[2,2], %b: f32[2,3], %c: f32[2,1]) -> (f32[2,6]) {
          %0: f32[2,3] = neg %b
          %1: f32[2,6] = concat[dim=1] %a, %0, %c
          %2: f32[2,6] = exp %1
          return %2
        }
        """, """
        func @f(%a: f32[2,2], %b: f32[2,3], %c: f32[2,1]) -> (f32[2,6]) [device="cpu"] {
          %0: f32[2,6] = concat[dim=1] %a, %b, %c
          %1: i64[2,6] = iota[dim=1]
          %2: i64[] = full[value=2]
          %3: b1[2,6] = ge %1, %2
          %4: i64[] = full[value=5]
          %5: b1[2,6] = lt %1, %4
          %6: b1[2,6] = logical_and %3, %5
          %7: f32[] = full[value=-1.0]
          %8: f32[] = full[value=1.0]
          %9: f32[2,6] = where %6, %7, %8
          %10: f32[2,6] = mul %0, %9
          %11: f32[2,6] = exp %10
          return %11
        }
        """)


def test_rotary_keys_are_rotated_and_repeated_in_one_pass_over_views():
    # Llama's K: rotary (rotate_half, cos, sin), then repeat_kv (size-1 reshape, expand, a
    # reshape that would copy). The views move above the whole rotary, through the concat, to
    # views of k: fuse makes one kernel that writes the repeated keys.
    text = """
        func @f(%k: f32[1,2,3,4], %cos: f32[3,4], %sin: f32[3,4]) -> (f32[1,4,3,4]) {
          %0: f32[1,2,3,2] = slice[dim=3, end=2, start=0, step=1] %k
          %1: f32[1,2,3,2] = slice[dim=3, end=4, start=2, step=1] %k
          %2: f32[1,2,3,2] = neg %1
          %3: f32[1,2,3,4] = concat[dim=3] %2, %0
          %4: f32[1,2,3,4] = mul %3, %sin
          %5: f32[1,2,3,4] = mul %k, %cos
          %6: f32[1,2,3,4] = add %5, %4
          %7: f32[1,2,1,3,4] = reshape[shape=(1, 2, 1, 3, 4)] %6
          %8: f32[1,2,2,3,4] = expand[shape=(1, 2, 2, 3, 4)] %7
          %9: f32[1,4,3,4] = reshape[shape=(1, 4, 3, 4)] %8
          return %9
        }
        """
    run_golden("hoist_views", text, """
        func @f(%k: f32[1,2,3,4], %cos: f32[3,4], %sin: f32[3,4]) -> (f32[1,4,3,4]) [device="cpu"] {
          %0: f32[1,2,3,2] = slice[dim=3, end=2, start=0, step=1] %k
          %1: f32[1,2,3,2] = slice[dim=3, end=4, start=2, step=1] %k
          %2: f32[1,2,1,3,2] = reshape[shape=(1, 2, 1, 3, 2)] %1
          %3: f32[1,2,1,3,2] = reshape[shape=(1, 2, 1, 3, 2)] %0
          %4: f32[1,2,2,3,2] = expand[shape=(1, 2, 2, 3, 2)] %2
          %5: f32[1,2,2,3,2] = expand[shape=(1, 2, 2, 3, 2)] %3
          %6: f32[1,2,2,3,4] = concat[dim=4] %4, %5
          %7: i64[] = full[value=2]
          %8: i64[1,2,2,3,4] = iota[dim=4]
          %9: b1[1,2,2,3,4] = lt %8, %7
          %10: f32[] = full[value=-1.0]
          %11: f32[] = full[value=1.0]
          %12: f32[1,2,2,3,4] = where %9, %10, %11
          %13: f32[1,2,2,3,4] = mul %6, %12
          %14: f32[1,2,2,3,4] = mul %13, %sin
          %15: f32[1,2,1,3,4] = reshape[shape=(1, 2, 1, 3, 4)] %k
          %16: f32[1,2,2,3,4] = expand[shape=(1, 2, 2, 3, 4)] %15
          %17: f32[1,2,2,3,4] = mul %16, %cos
          %18: f32[1,2,2,3,4] = add %17, %14
          %19: f32[1,4,3,4] = reshape[shape=(1, 4, 3, 4)] %18
          return %19
        }
        """)
    g = parse(text)
    run_pipeline(g, "hoist_views,fuse")
    assert [op.name for op in g.ops if op.name not in ("slice", "reshape", "expand")] == ["fused"]


def test_a_permute_moves_through_a_concat():
    run_golden("hoist_views", """
        func @f(%a: f32[2,3], %b: f32[2,5], %y: f32[8,2]) -> (f32[8,2]) {
          %0: f32[2,8] = concat[dim=1] %a, %b
          %1: f32[8,2] = permute[dims=(1, 0)] %0
          %2: f32[8,2] = add %1, %y
          return %2
        }
        """, """
        func @f(%a: f32[2,3], %b: f32[2,5], %y: f32[8,2]) -> (f32[8,2]) [device="cpu"] {
          %0: f32[3,2] = permute[dims=(1, 0)] %a
          %1: f32[5,2] = permute[dims=(1, 0)] %b
          %2: f32[8,2] = concat[dim=0] %0, %1
          %3: f32[8,2] = add %2, %y
          return %3
        }
        """)


@pytest.mark.parametrize("results, body", [
    # An integer concat of a neg: only float ones are rewritten (rotary is float).
    ("i64[8]", """
     %0: i64[4] = cast[dtype="i64"] %z
     %1: i64[4] = neg %0
     %2: i64[8] = concat[dim=0] %1, %0
     %3: i64[8] = abs %2
     return %3"""),
    # A concat read by a matmul: nowhere to fuse the sign.
    ("f32[2,4]", """
     %0: f32[4] = neg %z
     %1: f32[8] = concat[dim=0] %0, %z
     %2: f32[2,4] = reshape[shape=(2, 4)] %1
     %3: f32[2,4] = matmul %2, %w
     return %3"""),
    # The neg is read elsewhere too (returned): it would be computed anyway.
    ("f32[8], f32[4]", """
     %0: f32[4] = neg %z
     %1: f32[8] = concat[dim=0] %0, %z
     %2: f32[8] = exp %1
     return %2, %0"""),
])
def test_leaves_alone(results, body):
    run_golden("hoist_views", f"func @f(%z: f32[4], %w: f32[4,4]) -> ({results}) {{{body}\n}}", None)
