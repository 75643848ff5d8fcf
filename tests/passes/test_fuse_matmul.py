"""fuse_matmul: a matmul, the cast feeding it and the pointwise ops (or fuse's pointwise region)
reading its product become one `fused` region; golden IR plus values, and what must not fuse."""
from ember.ir import parse
from ember.passes import run_pipeline

from pass_testing import run_golden


def _rejected(rec) -> list[tuple[str, str, str]]:
    return [(r["producer"], r["consumer"], r["reason"]) for r in rec.details["rejected"]]


def test_linear_with_cast_prologue_and_fused_epilogue_is_one_region():
    # A Linear after fuse: x cast to bf16, the transposed weight, fuse's region of bias + scale +
    # cast. The weight's permute is a view: it stays outside (the template reads it by strides).
    rec = run_golden("fuse_matmul", """
        func @f(%x: f32[4,8], %w: bf16[6,8], %b: bf16[6]) -> (bf16[4,6]) {
          %0: bf16[4,8] = cast[dtype="bf16"] %x
          %1: bf16[8,6] = permute[dims=(1, 0)] %w
          %2: bf16[4,6] = matmul %0, %1
          %3: bf16[4,6] = fused[name="fused0"] %b, %2 {
            ^(%in0: bf16[6], %in1: bf16[4,6]):
            %0: bf16[4,6] = add %in0, %in1
            %1: f32[4,6] = cast[dtype="f32"] %0
            %2: f32[] = full[value=0.5]
            %3: f32[4,6] = mul %1, %2
            %4: bf16[4,6] = cast[dtype="bf16"] %3
            yield %4
          }
          return %3
        }
        """, """
        func @f(%x: f32[4,8], %w: bf16[6,8], %b: bf16[6]) -> (bf16[4,6]) [device="cpu"] {
          %0: bf16[8,6] = permute[dims=(1, 0)] %w
          %1: bf16[4,6] = fused[name="matmul0"] %x, %0, %b {
            ^(%in0: f32[4,8], %in1: bf16[8,6], %in2: bf16[6]):
            %0: bf16[4,8] = cast[dtype="bf16"] %in0
            %1: bf16[4,6] = matmul %0, %in1
            %2: bf16[4,6] = add %in2, %1
            %3: f32[4,6] = cast[dtype="f32"] %2
            %4: f32[] = full[value=0.5]
            %5: f32[4,6] = mul %3, %4
            %6: bf16[4,6] = cast[dtype="bf16"] %5
            yield %6
          }
          return %1
        }
        """)
    # cast result (4*8 bf16) and product (4*6 bf16), each no longer written and read back
    assert rec.stats == {"regions": 1, "prologues": 1, "epilogues": 1, "bytes_saved": 2 * 64 + 2 * 48}
    assert rec.details["bytes_saved"] == {"matmul0": 224} and _rejected(rec) == []


def test_batched_product_also_returned_is_a_region_result():
    # The product is returned, so the region yields it next to the epilogue's result; the add
    # after the scale is a second pointwise reader of another value and stays (fuse's job).
    rec = run_golden("fuse_matmul", """
        func @f(%x: f32[2,4,8], %w: f32[2,8,6], %r: f32[2,4,6]) -> (f32[2,4,6], f32[2,4,6]) {
          %0: f32[2,4,6] = matmul %x, %w
          %1: f32[] = full[value=2.0]
          %2: f32[2,4,6] = mul %0, %1
          %3: f32[2,4,6] = add %2, %r
          return %3, %0
        }
        """, """
        func @f(%x: f32[2,4,8], %w: f32[2,8,6], %r: f32[2,4,6]) -> (f32[2,4,6], f32[2,4,6]) [device="cpu"] {
          %0: f32[2,4,6], %1: f32[2,4,6] = fused[name="matmul0"] %x, %w {
            ^(%in0: f32[2,4,8], %in1: f32[2,8,6]):
            %0: f32[2,4,6] = matmul %in0, %in1
            %1: f32[] = full[value=2.0]
            %2: f32[2,4,6] = mul %0, %1
            yield %0, %2
          }
          %2: f32[2,4,6] = add %1, %r
          return %2, %0
        }
        """)
    assert rec.stats["bytes_saved"] == 2 * 4 * 6 * 4  # the product is still written once, read once less


def test_two_matmuls_whose_regions_would_read_each_other_fuse_once():
    # add(mm0, mm1) can be mm0's epilogue (mm1's product an input) and then is taken for mm1.
    rec = run_golden("fuse_matmul", """
        func @f(%a: f16[4,8], %b: f16[8,4], %c: f16[4,8]) -> (f16[4,4]) {
          %0: f16[4,4] = matmul %a, %b
          %1: f16[4,4] = matmul %c, %b
          %2: f16[4,4] = add %0, %1
          return %2
        }
        """, """
        func @f(%a: f16[4,8], %b: f16[8,4], %c: f16[4,8]) -> (f16[4,4]) [device="cpu"] {
          %0: f16[4,4] = matmul %c, %b
          %1: f16[4,4] = fused[name="matmul0"] %a, %b, %0 {
            ^(%in0: f16[4,8], %in1: f16[8,4], %in2: f16[4,4]):
            %0: f16[4,4] = matmul %in0, %in1
            %1: f16[4,4] = add %0, %in2
            yield %1
          }
          return %1
        }
        """)
    assert _rejected(rec) == [("%1 = matmul", "%2 = add", "would-create-cycle")]


def test_reduction_view_extern_and_cycle_readers_do_not_fuse():
    rec = run_golden("fuse_matmul", """
        func @f(%x: f32[4,8], %w: f32[8,6]) -> (f32[4], f32[6,4], f32[4,6]) {
          %0: f32[4,6] = matmul %x, %w
          %1: f32[4] = reduce_sum[axes=(1,), keepdim=False] %0
          %2: f32[6,4] = permute[dims=(1, 0)] %0
          %3: f32[6,4] = relu %2
          %4: f32[4,6] = extern[target="aten.sort.default", args=[#0], outputs=(0,)] %0
          %5: f32[4,6] = add %0, %4
          return %1, %3, %5
        }
        """, None)
    assert _rejected(rec) == [("%0 = matmul", "%1 = reduce_sum", "epilogue-reduces"),
                              ("%0 = matmul", "%2 = permute", "not-fusible-op"),
                              ("%0 = matmul", "%4 = extern[aten.sort.default]", "not-fusible-op"),
                              ("%0 = matmul", "%5 = add", "would-create-cycle")]
    assert "through %4 = extern[aten.sort.default]" in rec.details["rejected"][3]["detail"]


def test_region_with_a_reduction_and_a_larger_domain_do_not_fuse():
    rec = run_golden("fuse_matmul", """
        func @f(%x: f32[4,8], %w: f32[8,6], %y: f32[3,4,6]) -> (f32[4,1], f32[3,4,6]) {
          %0: f32[4,6] = matmul %x, %w
          %1: f32[4,1] = fused[name="fused0"] %0 {
            ^(%in0: f32[4,6]):
            %0: f32[4,6] = exp %in0
            %1: f32[4,1] = reduce_sum[axes=(1,), keepdim=True] %0
            yield %1
          }
          %2: f32[3,4,6] = add %0, %y
          return %1, %2
        }
        """, None)
    assert [r[2] for r in _rejected(rec)] == ["epilogue-reduces", "shape-mismatch"]


def test_a_cast_with_another_reader_is_no_prologue_and_f64_is_left_alone():
    run_golden("fuse_matmul", """
        func @f(%x: f32[4,8], %w: bf16[8,6]) -> (bf16[4,6], bf16[4,8]) {
          %0: bf16[4,8] = cast[dtype="bf16"] %x
          %1: bf16[4,6] = matmul %0, %w
          return %1, %0
        }
        """, None)
    run_golden("fuse_matmul", """
        func @f(%x: f64[4,8], %w: f64[8,6], %b: f64[6]) -> (f64[4,6]) {
          %0: f64[4,6] = matmul %x, %w
          %1: f64[4,6] = add %0, %b
          return %1
        }
        """, None)


def test_default_pipeline_names_the_region_for_the_fusion_report():
    g = parse("""
        func @f(%x: bf16[4,8], %w: bf16[6,8], %b: bf16[6]) -> (bf16[4,6]) {
          %0: bf16[8,6] = permute[dims=(1, 0)] %w
          %1: bf16[4,6] = matmul %x, %0
          %2: bf16[4,6] = add %1, %b
          %3: bf16[4,6] = relu %2
          return %3
        }
        """)
    from ember.options import DEFAULT_PIPELINE
    report = run_pipeline(g, DEFAULT_PIPELINE)
    assert DEFAULT_PIPELINE.endswith(",fuse,fuse_matmul,gelu_bf16")
    regions = [op for op in g.ops if op.name == "fused"]
    assert [op.attrs["name"] for op in regions] == ["matmul0"]
    assert [b.name for b in regions[0].attrs["body"].ops] == ["matmul", "add", "relu"]
    assert report["fuse_matmul"].stats["regions"] == 1


def test_residual_add_before_a_norm_joins_the_norm_not_the_matmul():
    # A transformer block's projection, residual add and norm, through the passes that decide
    # it; here the residual is added on the product's [B*T,N] and the sum reshaped for the norm.
    # The matmul region keeps only its bias (the library's addmm); the residual add and the
    # norm's upcast are the norm's row kernel, which also yields the sum (the next residual add
    # reads it, through a view). No f32 copy of the sum crosses a kernel boundary.
    run_golden("move_reshapes,fuse,fuse_matmul", """
        func @f(%x: bf16[6,4], %w: bf16[4,5], %b: bf16[5], %r: bf16[6,5], %g: f32[5]) -> (bf16[6,5], bf16[2,3,5]) {
          %0: bf16[6,5] = matmul %x, %w
          %1: bf16[6,5] = add %b, %0
          %2: bf16[6,5] = add %1, %r
          %3: f32[6,5] = cast[dtype="f32"] %2
          %4: f32[2,3,5] = reshape[shape=(2, 3, 5)] %3
          %5: f32[2,3,1] = reduce_sum[axes=(2,), keepdim=True] %4
          %6: f32[2,3,5] = sub %4, %5
          %7: f32[2,3,5] = mul %6, %g
          %8: bf16[2,3,5] = cast[dtype="bf16"] %7
          return %2, %8
        }
        """, """
        func @f(%x: bf16[6,4], %w: bf16[4,5], %b: bf16[5], %r: bf16[6,5], %g: f32[5]) -> (bf16[6,5], bf16[2,3,5]) [device="cpu"] {
          %0: bf16[6,5] = fused[name="matmul0"] %x, %w, %b {
            ^(%in0: bf16[6,4], %in1: bf16[4,5], %in2: bf16[5]):
            %0: bf16[6,5] = matmul %in0, %in1
            %1: bf16[6,5] = add %in2, %0
            yield %1
          }
          %1: bf16[2,3,5] = reshape[shape=(2, 3, 5)] %0
          %2: bf16[2,3,5] = reshape[shape=(2, 3, 5)] %r
          %3: bf16[2,3,5], %4: bf16[2,3,5] = fused[name="fused0"] %1, %2, %g {
            ^(%in0: bf16[2,3,5], %in1: bf16[2,3,5], %in2: f32[5]):
            %0: bf16[2,3,5] = add %in0, %in1
            %1: f32[2,3,5] = cast[dtype="f32"] %0
            %2: f32[2,3,1] = reduce_sum[axes=(2,), keepdim=True] %1
            %3: f32[2,3,5] = sub %1, %2
            %4: f32[2,3,5] = mul %3, %in2
            %5: bf16[2,3,5] = cast[dtype="bf16"] %4
            yield %0, %5
          }
          %5: bf16[6,5] = reshape[shape=(6, 5)] %3
          return %5, %4
        }
        """)


def test_a_scale_over_a_split_dim_keeps_the_residual_in_the_epilogue():
    # Must not fuse: the norm reduces a dim the reshape split ([6,10] -> [6,2,5]) and the [10]
    # scale applied last cannot follow the reshape (nor, behind it, the residual add): the chain
    # stays the matmul's epilogue and the norm is a kernel of its own, reading it through the
    # reshape. (Had the add come last, it alone would move: both its operands are full-size.)
    rec = run_golden("move_reshapes,fuse,fuse_matmul", """
        func @f(%x: f32[6,4], %w: f32[4,10], %s: f32[10], %r: f32[6,10]) -> (f32[6,2,5]) {
          %0: f32[6,10] = matmul %x, %w
          %1: f32[6,10] = add %0, %r
          %2: f32[6,10] = mul %1, %s
          %3: f32[6,2,5] = reshape[shape=(6, 2, 5)] %2
          %4: f32[6,2,1] = reduce_sum[axes=(2,), keepdim=True] %3
          %5: f32[6,2,5] = sub %3, %4
          return %5
        }
        """, """
        func @f(%x: f32[6,4], %w: f32[4,10], %s: f32[10], %r: f32[6,10]) -> (f32[6,2,5]) [device="cpu"] {
          %0: f32[6,10] = fused[name="matmul0"] %x, %w, %r, %s {
            ^(%in0: f32[6,4], %in1: f32[4,10], %in2: f32[6,10], %in3: f32[10]):
            %0: f32[6,10] = matmul %in0, %in1
            %1: f32[6,10] = add %0, %in2
            %2: f32[6,10] = mul %1, %in3
            yield %2
          }
          %1: f32[6,2,5] = reshape[shape=(6, 2, 5)] %0
          %2: f32[6,2,5] = fused[name="fused1"] %1 {
            ^(%in0: f32[6,2,5]):
            %0: f32[6,2,1] = reduce_sum[axes=(2,), keepdim=True] %in0
            %1: f32[6,2,5] = sub %in0, %0
            yield %1
          }
          return %2
        }
        """)
    assert rec.stats == {"up": 0, "down": 0}   # move_reshapes left it
