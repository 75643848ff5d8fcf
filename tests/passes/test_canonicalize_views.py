"""canonicalize: copy and view rules, and the driver's safety guards (mutation, output aliasing)."""
from pass_testing import run_golden

# ----------------------------------------------------------------------------- copy and views


def test_copies_fold_unless_a_returned_copy_of_an_input():
    # Values are immutable: a copy is its operand, of an input too (eval BatchNorm copies its
    # running stats: `_to_copy`). Only a returned copy of an input keeps the output fresh.
    run_golden("canonicalize", """
        func @f(%x: f32[4]) -> (f32[4], f32[4]) {
          %0: f32[4] = exp %x
          %1: f32[4] = copy %0
          %2: f32[4] = neg %1
          %3: f32[4] = copy %x
          %4: f32[4] = copy %x
          %5: f32[4] = add %2, %4
          return %5, %3
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4], f32[4]) [device="cpu"] {
          %0: f32[4] = exp %x
          %1: f32[4] = neg %0
          %2: f32[4] = copy %x
          %3: f32[4] = add %1, %x
          return %3, %2
        }
        """)


def test_views_that_do_nothing():
    rec = run_golden("canonicalize", """
        func @f[s0](%x: f32[s0,4]) -> (f32[s0,4]) {
          %0: f32[s0,4] = exp %x
          %1: f32[s0,4] = reshape[shape=(s0, 4)] %0
          %2: f32[s0,4] = expand[shape=(s0, 4)] %1
          %3: f32[s0,4] = permute[dims=(0, 1)] %2
          %4: f32[s0,4] = slice[dim=0, end=s0, start=0, step=1] %3
          %5: f32[s0,4] = neg %4
          return %5
        }
        """, """
        func @f[s0](%x: f32[s0,4]) -> (f32[s0,4]) [device="cpu"] {
          %0: f32[s0,4] = exp %x
          %1: f32[s0,4] = neg %0
          return %1
        }
        """)
    assert rec.stats == {"view-noop": 4}


def test_partial_slice_and_real_reshape_stay():
    run_golden("canonicalize", """
        func @f(%x: f32[6,4]) -> (f32[5,4], f32[3,4], f32[24]) {
          %0: f32[5,4] = slice[dim=0, end=6, start=1, step=1] %x
          %1: f32[3,4] = slice[dim=0, end=6, start=0, step=2] %x
          %2: f32[24] = reshape[shape=(24,)] %x
          return %0, %1, %2
        }
        """, None)


def test_reshape_and_permute_chains_compose():
    rec = run_golden("canonicalize", """
        func @f(%x: f32[2,3,4]) -> (f32[4,6], f32[3,4,2], f32[2,3,4]) {
          %0: f32[6,4] = reshape[shape=(6, 4)] %x
          %1: f32[4,6] = reshape[shape=(4, 6)] %0
          %2: f32[4,6] = neg %1
          %3: f32[3,2,4] = permute[dims=(1, 0, 2)] %x
          %4: f32[3,4,2] = permute[dims=(0, 2, 1)] %3
          %5: f32[3,4,2] = neg %4
          %6: f32[4,2,3] = permute[dims=(2, 0, 1)] %x
          %7: f32[2,3,4] = permute[dims=(1, 2, 0)] %6
          %8: f32[24] = reshape[shape=(24,)] %x
          %9: f32[2,3,4] = reshape[shape=(2, 3, 4)] %8
          %10: f32[2,3,4] = add %7, %9
          return %2, %5, %10
        }
        """, """
        func @f(%x: f32[2,3,4]) -> (f32[4,6], f32[3,4,2], f32[2,3,4]) [device="cpu"] {
          %0: f32[6,4] = reshape[shape=(6, 4)] %x
          %1: f32[4,6] = reshape[shape=(4, 6)] %x
          %2: f32[4,6] = neg %1
          %3: f32[3,2,4] = permute[dims=(1, 0, 2)] %x
          %4: f32[3,4,2] = permute[dims=(1, 2, 0)] %x
          %5: f32[3,4,2] = neg %4
          %6: f32[4,2,3] = permute[dims=(2, 0, 1)] %x
          %7: f32[24] = reshape[shape=(24,)] %x
          %8: f32[2,3,4] = add %x, %x
          return %2, %5, %8
        }
        """)
    assert rec.stats == {"reshape-chain": 2, "permute-chain": 2}


# ----------------------------------------------------------------------------- safety guards


def test_never_turns_an_output_into_an_input_or_another_output():
    # Forwarding would return %x itself (or the same tensor twice) where eager returned fresh ones.
    run_golden("canonicalize", """
        func @f(%x: f32[4]) -> (f32[4], f32[4], f32[4], f32[4]) {
          %0: f32[] = full[value=1.0]
          %1: f32[4] = mul %x, %0
          %2: f32[4] = exp %x
          %3: f32[4] = copy %2
          %4: f32[4] = neg %x
          %5: f32[4] = neg %4
          return %1, %2, %3, %5
        }
        """, None)


def test_never_forwards_a_value_an_extern_writes():
    # copy_ writes %0: the copy %1 must stay a separate buffer.
    run_golden("canonicalize", """
        func @f(%x: f32[4], %y: f32[4]) -> (f32[4], f32[4]) {
          %0: f32[4] = exp %x
          %1: f32[4] = copy %0
          %2: f32[4] = extern[target="aten.copy_.default", args=[#0, #1]] %0, %y
          %3: f32[4] = neg %1
          return %3, %2
        }
        """, None, semantics=False)


def test_never_makes_a_view_of_an_output_share_a_buffer_with_an_input_or_another_output():
    # The returned reshapes are views of %1 and %4; forwarding would make them views of %0 (also
    # returned) and of the input %x.
    run_golden("canonicalize", """
        func @f(%x: f32[4]) -> (f32[4], f32[2,2], f32[2,2]) {
          %0: f32[4] = exp %x
          %1: f32[4] = copy %0
          %2: f32[2,2] = reshape[shape=(2, 2)] %1
          %3: f32[] = full[value=1.0]
          %4: f32[4] = mul %x, %3
          %5: f32[2,2] = reshape[shape=(2, 2)] %4
          return %0, %2, %5
        }
        """, None)


def test_never_forwards_when_an_extern_writes_a_view_of_either_side():
    # copy_ writes into a view of the copy %1 (first graph) or of its operand %0 (second): the
    # copy must stay a buffer of its own.
    for written in ("%1", "%0"):
        run_golden("canonicalize", f"""
            func @f(%x: f32[4], %y: f32[2,2]) -> (f32[4], f32[2,2]) {{
              %0: f32[4] = exp %x
              %1: f32[4] = copy %0
              %2: f32[2,2] = reshape[shape=(2, 2)] {written}
              %3: f32[2,2] = extern[target="aten.copy_.default", args=[#0, #1]] %2, %y
              %4: f32[4] = neg %1
              return %4, %3
            }}
            """, None, semantics=False)


def test_a_returned_copy_of_a_slice_keeps_the_sliced_buffer_free():
    # Forwarded, the caller's output would be a view that pins the whole product (GPT-2's
    # returned keys, a third of a QKV buffer). A copy of a whole intermediate still folds, and
    # so does a copy of a slice no output sees.
    run_golden("canonicalize", """
        func @f(%x: f32[4,6]) -> (f32[4,2], f32[4,6], f32[4,2]) {
          %0: f32[4,6] = exp %x
          %1: f32[4,2] = slice[dim=1, end=4, start=2, step=1] %0
          %2: f32[4,2] = copy %1
          %3: f32[4,6] = neg %x
          %4: f32[4,6] = copy %3
          %5: f32[4,2] = slice[dim=1, end=2, start=0, step=1] %3
          %6: f32[4,2] = copy %5
          %7: f32[4,2] = neg %6
          return %2, %4, %7
        }
        """, """
        func @f(%x: f32[4,6]) -> (f32[4,2], f32[4,6], f32[4,2]) [device="cpu"] {
          %0: f32[4,6] = exp %x
          %1: f32[4,2] = slice[dim=1, end=4, start=2, step=1] %0
          %2: f32[4,2] = copy %1
          %3: f32[4,6] = neg %x
          %4: f32[4,2] = slice[dim=1, end=2, start=0, step=1] %3
          %5: f32[4,2] = neg %4
          return %2, %3, %5
        }
        """)
