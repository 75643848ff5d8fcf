"""canonicalize: constant folding (rule fold-constant)."""
import torch

from pass_testing import run_golden

# ----------------------------------------------------------------------------- constant folding


def test_folds_pointwise_constants():
    rec = run_golden("canonicalize", """
        func @f(%x: f32[4]) -> (f32[4]) {
          %0: f32[] = full[value=2.0]
          %1: f32[] = full[value=3.0]
          %2: f32[] = mul %0, %1
          %3: f32[] = exp %2
          %4: f32[4] = add %x, %3
          return %4
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4]) [device="cpu"] {
          %0: f32[] = full[value=2.0]
          %1: f32[] = full[value=3.0]
          %2: f32[] = full[value=6.0]
          %3: f32[] = full[value=403.4288024902344]
          %4: f32[4] = add %x, %3
          return %4
        }
        """)
    assert rec.stats == {"fold-constant": 2}
    assert 403.4288024902344 == torch.exp(torch.tensor(6.0)).item()  # the value torch computes


def test_folds_broadcast_over_symbolic_shape():
    run_golden("canonicalize", """
        func @f[s0](%x: f32[s0,4]) -> (f32[s0,4]) {
          %0: f32[s0,4] = full[value=2.5]
          %1: f32[] = full[value=-1.0]
          %2: f32[s0,4] = mul %0, %1
          %3: f32[s0,4] = add %x, %2
          return %3
        }
        """, """
        func @f[s0](%x: f32[s0,4]) -> (f32[s0,4]) [device="cpu"] {
          %0: f32[s0,4] = full[value=2.5]
          %1: f32[] = full[value=-1.0]
          %2: f32[s0,4] = full[value=-2.5]
          %3: f32[s0,4] = add %x, %2
          return %3
        }
        """)


def test_folds_small_reduction_and_cast():
    run_golden("canonicalize", """
        func @f(%x: i32[4]) -> (i32[4]) {
          %0: f32[4,8] = full[value=0.5]
          %1: f32[4] = reduce_sum[axes=(1,), keepdim=False] %0
          %2: i32[4] = cast[dtype="i32"] %1
          %3: i32[4] = add %x, %2
          return %3
        }
        """, """
        func @f(%x: i32[4]) -> (i32[4]) [device="cpu"] {
          %0: f32[4,8] = full[value=0.5]
          %1: f32[4] = full[value=4.0]
          %2: i32[4] = full[value=4]
          %3: i32[4] = add %x, %2
          return %3
        }
        """)


def test_folds_views_of_constants():
    run_golden("canonicalize", """
        func @f[s0](%x: f32[s0,4]) -> (f32[s0,4]) {
          %0: f32[4] = full[value=-0.0]
          %1: f32[1,4] = reshape[shape=(1, 4)] %0
          %2: f32[s0,4] = expand[shape=(s0, 4)] %1
          %3: f32[s0,4] = mul %x, %2
          return %3
        }
        """, """
        func @f[s0](%x: f32[s0,4]) -> (f32[s0,4]) [device="cpu"] {
          %0: f32[4] = full[value=-0.0]
          %1: f32[1,4] = full[value=-0.0]
          %2: f32[s0,4] = full[value=-0.0]
          %3: f32[s0,4] = mul %x, %2
          return %3
        }
        """)


def test_does_not_fold_non_uniform_or_failing_constants():
    # concat of +0.0 and -0.0 is not one value (bitwise); 1 // 0 raises in torch;
    # a reduction over a symbolic size cannot be evaluated at compile time.
    run_golden("canonicalize", """
        func @f[s0](%x: f32[s0]) -> (f32[4], i32[], f32[]) {
          %0: f32[2] = full[value=0.0]
          %1: f32[2] = full[value=-0.0]
          %2: f32[4] = concat[dim=0] %0, %1
          %3: i32[] = full[value=1]
          %4: i32[] = full[value=0]
          %5: i32[] = floordiv %3, %4
          %6: f32[s0] = full[value=1.0]
          %7: f32[] = reduce_sum[axes=(0,), keepdim=False] %6
          return %2, %5, %7
        }
        """, None, semantics=False)  # %5 raises in the interpreter too


def test_folds_comparisons_to_bool():
    run_golden("canonicalize", """
        func @f(%x: f32[4]) -> (f32[4]) {
          %0: f32[] = full[value=nan]
          %1: b1[] = eq %0, %0
          %2: f32[4] = where %1, %x, %x
          %3: f32[4] = exp %2
          return %3
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4]) [device="cpu"] {
          %0: f32[] = full[value=nan]
          %1: b1[] = full[value=False]
          %2: f32[4] = where %1, %x, %x
          %3: f32[4] = exp %2
          return %3
        }
        """)


def test_symbolic_fill_values_are_left_alone():
    # full[value=s0] is a size known at run time (x / x.shape[0]): not a constant to fold.
    run_golden("canonicalize", """
        func @f[s0](%x: f32[s0]) -> (f32[s0], f32[]) {
          %0: f32[] = full[value=s0]
          %1: f32[s0] = div %x, %0
          %2: f32[] = full[value=2.0]
          %3: f32[] = mul %0, %2
          return %1, %3
        }
        """, None)
