"""canonicalize: arithmetic identities, involutions and casts (rules_arith.py). Folding and views
have their own files: test_canonicalize_folding.py, test_canonicalize_views.py."""
import pytest
import torch

from ember.ir import interpret, parse, to_torch
from ember.passes import run_pipeline
from ember.passes.rules_arith import exact_cast

from pass_testing import run_golden

# ----------------------------------------------------------------------------- additive identities


def test_add_negative_zero_folds_add_positive_zero_does_not():
    rec = run_golden("canonicalize", """
        func @f(%x: f32[4]) -> (f32[4], f32[4]) {
          %0: f32[] = full[value=-0.0]
          %1: f32[] = full[value=0.0]
          %2: f32[4] = add %x, %0
          %3: f32[4] = add %0, %x
          %4: f32[4] = add %x, %1
          %5: f32[4] = mul %2, %3
          %6: f32[4] = neg %4
          return %5, %6
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4], f32[4]) [device="cpu"] {
          %0: f32[] = full[value=-0.0]
          %1: f32[] = full[value=0.0]
          %2: f32[4] = add %x, %1
          %3: f32[4] = mul %x, %x
          %4: f32[4] = neg %2
          return %3, %4
        }
        """)
    assert rec.stats == {"add-zero": 2}


def test_sub_positive_zero_folds_sub_negative_zero_does_not():
    run_golden("canonicalize", """
        func @f(%x: f32[4]) -> (f32[4], f32[4], f32[4]) {
          %0: f32[] = full[value=0.0]
          %1: f32[] = full[value=-0.0]
          %2: f32[4] = sub %x, %0
          %3: f32[4] = sub %x, %1
          %4: f32[4] = sub %0, %x
          %5: f32[4] = exp %2
          return %5, %3, %4
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4], f32[4], f32[4]) [device="cpu"] {
          %0: f32[] = full[value=0.0]
          %1: f32[] = full[value=-0.0]
          %2: f32[4] = sub %x, %1
          %3: f32[4] = sub %0, %x
          %4: f32[4] = exp %x
          return %4, %2, %3
        }
        """)


def test_signed_zero_is_preserved_bit_for_bit():
    text = """
        func @f(%x: f32[3]) -> (f32[3]) {
          %0: f32[] = full[value=-0.0]
          %1: f32[] = full[value=0.0]
          %2: f32[3] = add %x, %0
          %3: f32[3] = sub %2, %1
          %4: f32[3] = neg %3
          return %4
        }
        """
    g = parse(text)
    x = torch.tensor([-0.0, 0.0, -1.5])
    want = interpret(g, [x])[0]
    run_pipeline(g, "canonicalize,dce")
    assert [op.name for op in g.ops] == ["neg"]
    got = interpret(g, [x])[0]
    assert torch.equal(torch.signbit(got), torch.signbit(want)) and torch.equal(got, want)


def test_integer_and_bool_zero():
    run_golden("canonicalize", """
        func @f(%i: i32[4], %b: b1[4]) -> (i32[4], b1[4]) {
          %0: i32[] = full[value=0]
          %1: b1[] = full[value=False]
          %2: i32[4] = add %0, %i
          %3: i32[4] = sub %2, %0
          %4: i32[4] = neg %3
          %5: b1[4] = add %b, %1
          %6: b1[4] = logical_not %5
          return %4, %6
        }
        """, """
        func @f(%i: i32[4], %b: b1[4]) -> (i32[4], b1[4]) [device="cpu"] {
          %0: i32[] = full[value=0]
          %1: b1[] = full[value=False]
          %2: i32[4] = neg %i
          %3: b1[4] = logical_not %b
          return %2, %3
        }
        """)


# ----------------------------------------------------------------------------- multiplicative


def test_mul_and_div_by_one():
    rec = run_golden("canonicalize", """
        func @f(%x: f16[4]) -> (f16[4]) {
          %0: f16[] = full[value=1.0]
          %1: f16[4] = mul %0, %x
          %2: f16[4] = div %1, %0
          %3: f16[4] = mul %2, %0
          %4: f16[4] = exp %3
          return %4
        }
        """, """
        func @f(%x: f16[4]) -> (f16[4]) [device="cpu"] {
          %0: f16[] = full[value=1.0]
          %1: f16[4] = exp %x
          return %1
        }
        """)
    assert rec.stats == {"mul-one": 2, "div-one": 1}


def test_identity_that_broadcasts_is_kept():
    # x * ones[3,4] has shape [3,4], not x's [4]: not a no-op.
    run_golden("canonicalize", """
        func @f(%x: f32[4]) -> (f32[3,4]) {
          %0: f32[3,4] = full[value=1.0]
          %1: f32[3,4] = mul %x, %0
          %2: f32[3,4] = exp %1
          return %2
        }
        """, None)


def test_value_rounding_to_one_in_the_dtype_counts_as_one():
    # 1.0001 is 1.0 in f16 (and 1.5 is 1 in i32), as torch.full stores them.
    run_golden("canonicalize", """
        func @f(%x: f16[4], %i: i32[4]) -> (f16[4], i32[4]) {
          %0: f16[] = full[value=1.0001]
          %1: f16[4] = mul %x, %0
          %2: i32[] = full[value=1.5]
          %3: i32[4] = mul %i, %2
          %4: f16[4] = exp %1
          %5: i32[4] = neg %3
          return %4, %5
        }
        """, """
        func @f(%x: f16[4], %i: i32[4]) -> (f16[4], i32[4]) [device="cpu"] {
          %0: f16[] = full[value=1.0001]
          %1: i32[] = full[value=1.5]
          %2: f16[4] = exp %x
          %3: i32[4] = neg %i
          return %2, %3
        }
        """)


# ----------------------------------------------------------------------------- involutions, casts


def test_double_involutions_to_a_fixpoint():
    # neg^4 x: the 2nd neg becomes x, so the 3rd becomes `neg x` and the 4th x. The leftover
    # `neg %x` ops are dead (dce) and duplicates (cse): each pass does one job.
    rec = run_golden("canonicalize", """
        func @f(%x: f32[4], %i: i32[4]) -> (f32[4], i32[4]) {
          %0: f32[4] = neg %x
          %1: f32[4] = neg %0
          %2: f32[4] = neg %1
          %3: f32[4] = neg %2
          %4: f32[4] = exp %3
          %5: i32[4] = bitwise_not %i
          %6: i32[4] = bitwise_not %5
          %7: i32[4] = abs %6
          return %4, %7
        }
        """, """
        func @f(%x: f32[4], %i: i32[4]) -> (f32[4], i32[4]) [device="cpu"] {
          %0: f32[4] = neg %x
          %1: f32[4] = neg %x
          %2: f32[4] = exp %x
          %3: i32[4] = bitwise_not %i
          %4: i32[4] = abs %i
          return %2, %4
        }
        """)
    assert rec.stats["double-involution"] == 3


def test_logical_not_twice_only_on_bools():
    run_golden("canonicalize", """
        func @f(%x: f32[4]) -> (b1[4]) {
          %0: b1[4] = logical_not %x
          %1: b1[4] = logical_not %0
          return %1
        }
        """, None)


def test_cast_to_same_dtype_and_exact_chains():
    run_golden("canonicalize", """
        func @f(%x: i8[4], %h: f16[4]) -> (i64[4], i8[4], f16[4], bf16[4]) {
          %0: i32[4] = cast[dtype="i32"] %x
          %1: i64[4] = cast[dtype="i64"] %0
          %2: i8[4] = cast[dtype="i8"] %0
          %3: i8[4] = abs %2
          %4: f16[4] = cast[dtype="f16"] %h
          %5: f32[4] = cast[dtype="f32"] %4
          %6: f16[4] = cast[dtype="f16"] %5
          %7: f16[4] = neg %6
          %8: bf16[4] = cast[dtype="bf16"] %5
          return %1, %3, %7, %8
        }
        """, """
        func @f(%x: i8[4], %h: f16[4]) -> (i64[4], i8[4], f16[4], bf16[4]) [device="cpu"] {
          %0: i32[4] = cast[dtype="i32"] %x
          %1: i64[4] = cast[dtype="i64"] %x
          %2: i8[4] = abs %x
          %3: f32[4] = cast[dtype="f32"] %h
          %4: f16[4] = neg %h
          %5: bf16[4] = cast[dtype="bf16"] %h
          return %1, %2, %4, %5
        }
        """)


def test_inexact_cast_chains_are_kept():
    # f32 -> i32 loses fractions; f16 -> f32 -> i32 ends in float->int (out of range may differ);
    # i32 -> f32 is not exact above 2**24.
    run_golden("canonicalize", """
        func @f(%x: f32[4], %h: f16[4], %i: i32[4]) -> (f32[4], i32[4], i32[4]) {
          %0: i32[4] = cast[dtype="i32"] %x
          %1: f32[4] = cast[dtype="f32"] %0
          %2: f32[4] = cast[dtype="f32"] %h
          %3: i32[4] = cast[dtype="i32"] %2
          %4: f32[4] = cast[dtype="f32"] %i
          %5: i32[4] = cast[dtype="i32"] %4
          return %1, %3, %5
        }
        """, None)


@pytest.mark.parametrize("src,dst,exact", [
    ("b1", "f16", True), ("u8", "i16", True), ("u8", "i8", False), ("i8", "u8", False),
    ("i16", "f16", False), ("i16", "f32", True), ("i32", "f32", False), ("i32", "f64", True),
    ("i64", "f64", False), ("f16", "bf16", False), ("bf16", "f32", True), ("f32", "f16", False),
])
def test_exact_cast_table(src, dst, exact):
    assert exact_cast(src, dst) is exact
    if src != "b1" and exact:  # check the claim: every value round-trips
        info = torch.iinfo if src[0] in "iu" else torch.finfo
        lo, hi = info(to_torch(src)).min, info(to_torch(src)).max
        vals = torch.tensor([lo, hi, 0, 1, -1 if lo < 0 else 2], dtype=to_torch(src))
        assert torch.equal(vals.to(to_torch(dst)).to(to_torch(src)), vals)
