from pass_testing import run_golden


def test_merges_duplicates_and_their_users():
    # %1 duplicates %0; once merged, %3 duplicates %2 too (operands compare after merging).
    rec = run_golden("cse", """
        func @f(%x: f32[4], %y: f32[4]) -> (f32[4]) {
          %0: f32[4] = add %x, %y
          %1: f32[4] = add %x, %y
          %2: f32[4] = exp %0
          %3: f32[4] = exp %1
          %4: f32[4] = mul %2, %3
          return %4
        }
        """, """
        func @f(%x: f32[4], %y: f32[4]) -> (f32[4]) [device="cpu"] {
          %0: f32[4] = add %x, %y
          %1: f32[4] = exp %0
          %2: f32[4] = mul %1, %1
          return %2
        }
        """)
    assert rec.stats == {"merged": 2}


def test_operand_order_matters():
    # add is commutative, but cse compares operands as written (canonical order is not its job).
    run_golden("cse", """
        func @f(%x: f32[4], %y: f32[4]) -> (f32[4]) {
          %0: f32[4] = add %x, %y
          %1: f32[4] = add %y, %x
          %2: f32[4] = mul %0, %1
          return %2
        }
        """, None)


def test_attributes_compare_by_spelling():
    # 0.0 and -0.0 differ; nan equals nan; 1 (int) and 1.0 (float) differ.
    run_golden("cse", """
        func @f(%x: f32[4]) -> (f32[4]) {
          %0: f32[] = full[value=0.0]
          %1: f32[] = full[value=-0.0]
          %2: f32[] = full[value=nan]
          %3: f32[] = full[value=nan]
          %4: i32[] = full[value=1]
          %5: i32[] = full[value=1.0]
          %6: f32[4] = add %x, %0
          %7: f32[4] = add %6, %1
          %8: f32[4] = add %7, %2
          %9: f32[4] = add %8, %3
          return %9
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4]) [device="cpu"] {
          %0: f32[] = full[value=0.0]
          %1: f32[] = full[value=-0.0]
          %2: f32[] = full[value=nan]
          %3: i32[] = full[value=1]
          %4: i32[] = full[value=1.0]
          %5: f32[4] = add %x, %0
          %6: f32[4] = add %5, %1
          %7: f32[4] = add %6, %2
          %8: f32[4] = add %7, %2
          return %8
        }
        """)


def test_different_attrs_or_types_stay():
    run_golden("cse", """
        func @f(%x: f32[4,6]) -> (f32[4], f32[6], f64[4,6], f16[4,6]) {
          %0: f32[4] = reduce_sum[axes=(1,), keepdim=False] %x
          %1: f32[6] = reduce_sum[axes=(0,), keepdim=False] %x
          %2: f64[4,6] = cast[dtype="f64"] %x
          %3: f16[4,6] = cast[dtype="f16"] %x
          return %0, %1, %2, %3
        }
        """, None)


def test_never_merges_random_externs():
    run_golden("cse", """
        func @f(%x: f32[4]) -> (f32[4]) {
          %0: f32[4] = extern[target="aten.rand_like.default", args=[#0]] %x
          %1: f32[4] = extern[target="aten.rand_like.default", args=[#0]] %x
          %2: f32[4] = sub %0, %1
          return %2
        }
        """, None, semantics=False)  # random outputs


def test_merges_deterministic_externs():
    run_golden("cse", """
        func @f(%x: f32[4]) -> (f32[4]) {
          %0: f32[4] = extern[target="aten.sin.default", args=[#0]] %x
          %1: f32[4] = extern[target="aten.sin.default", args=[#0]] %x
          %2: f32[4] = add %0, %1
          return %2
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4]) [device="cpu"] {
          %0: f32[4] = extern[args=[#0], target="aten.sin.default"] %x
          %1: f32[4] = add %0, %0
          return %1
        }
        """)


def test_never_merges_around_a_mutated_value():
    # %a is written by copy_: the reads before (%0) and after (%3) see different data.
    run_golden("cse", """
        func @f(%a: f32[4], %y: f32[4]) -> (f32[4], f32[4], f32[4]) {
          %0: f32[4] = neg %a
          %1: f32[4] = neg %y
          %2: f32[4] = extern[target="aten.copy_.default", args=[#0, #1]] %a, %1
          %3: f32[4] = neg %a
          %4: f32[4] = extern[target="aten.copy_.default", args=[#0, #1]] %a, %1
          return %0, %3, %4
        }
        """, None, semantics=False)


def test_two_outputs_stay_two_tensors():
    run_golden("cse", """
        func @f(%x: f32[4]) -> (f32[4], f32[4]) {
          %0: f32[4] = exp %x
          %1: f32[4] = exp %x
          return %0, %1
        }
        """, None)


def test_duplicate_output_merges_into_internal_value():
    run_golden("cse", """
        func @f(%x: f32[4]) -> (f32[4], f32[4]) {
          %0: f32[4] = exp %x
          %1: f32[4] = neg %0
          %2: f32[4] = exp %x
          return %1, %2
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4], f32[4]) [device="cpu"] {
          %0: f32[4] = exp %x
          %1: f32[4] = neg %0
          return %1, %0
        }
        """)


def test_a_third_duplicate_does_not_join_a_returned_one():
    # %2 merges into %0, which is then returned: %3, also returned, must stay a tensor of its own.
    run_golden("cse", """
        func @f(%x: f32[4]) -> (f32[4], f32[4], f32[4]) {
          %0: f32[4] = exp %x
          %1: f32[4] = neg %0
          %2: f32[4] = exp %x
          %3: f32[4] = exp %x
          return %1, %2, %3
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4], f32[4], f32[4]) [device="cpu"] {
          %0: f32[4] = exp %x
          %1: f32[4] = neg %0
          %2: f32[4] = exp %x
          return %1, %0, %2
        }
        """)


def test_symbolic_shapes():
    run_golden("cse", """
        func @f[s0](%x: f32[s0,4]) -> (f32[s0,4]) {
          %0: f32[4,s0] = permute[dims=(1, 0)] %x
          %1: f32[4,s0] = permute[dims=(1, 0)] %x
          %2: f32[4,s0] = add %0, %1
          %3: f32[s0,4] = permute[dims=(1, 0)] %2
          return %3
        }
        """, """
        func @f[s0](%x: f32[s0,4]) -> (f32[s0,4]) [device="cpu"] {
          %0: f32[4,s0] = permute[dims=(1, 0)] %x
          %1: f32[4,s0] = add %0, %0
          %2: f32[s0,4] = permute[dims=(1, 0)] %1
          return %2
        }
        """)
