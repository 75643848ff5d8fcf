from pass_testing import run_golden


def test_removes_unused_chain():
    rec = run_golden("dce", """
        func @f(%x: f32[4]) -> (f32[4]) {
          %0: f32[4] = exp %x
          %1: f32[4] = neg %0
          %2: f32[4] = relu %x
          return %2
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4]) [device="cpu"] {
          %0: f32[4] = relu %x
          return %0
        }
        """)
    assert rec.stats == {"removed": 2}


def test_keeps_everything_used():
    rec = run_golden("dce", """
        func @f(%x: f32[4], %y: f32[4]) -> (f32[4], f32[4]) {
          %0: f32[4] = add %x, %y
          %1: f32[4] = mul %0, %x
          return %1, %0
        }
        """, None)
    assert rec.stats == {"removed": 0}


def test_keeps_mutating_extern_with_unused_result():
    # aten.copy_ writes to its first argument: it must run although nothing reads its result.
    run_golden("dce", """
        func @f(%x: f32[4], %y: f32[4]) -> (f32[4]) {
          %0: f32[4] = neg %y
          %1: f32[4] = extern[target="aten.copy_.default", args=[#0, #1]] %x, %0
          %2: f32[4] = relu %y
          return %2
        }
        """, None, semantics=False)  # the interpreter would mutate the test's input tensor


def test_removes_pure_extern_and_assert_stays():
    run_golden("dce", """
        func @f(%x: f32[4]) -> (f32[4]) {
          %0: f32[4] = extern[target="aten.sin.default", args=[#0]] %x
          %1: f32[4] = extern[target="aten.rand.default", args=[[4]]]
          %2: f32[4] = relu %x
          return %2
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4]) [device="cpu"] {
          %0: f32[4] = relu %x
          return %0
        }
        """)


def test_multi_result_op_kept_if_any_result_used():
    run_golden("dce", """
        func @f(%x: f32[4,6]) -> (i64[4]) {
          %0: f32[4], %1: i64[4] = extern[target="aten.max.dim", args=[#0, 1], outputs=(0, 1)] %x
          return %1
        }
        """, None)


def test_empty_graph_and_input_passthrough():
    run_golden("dce", """
        func @f(%x: f32[4]) -> (f32[4]) {
          %0: f32[4] = neg %x
          return %x
        }
        """, """
        func @f(%x: f32[4]) -> (f32[4]) [device="cpu"] {
          return %x
        }
        """)
