"""gelu_bf16: an erf GELU that a matmul region rounds to bf16 folds into gelu[accuracy="bf16"]."""
from pass_testing import run_golden

# BERT's MLP up-projection after fuse_matmul (the decomposition's erf GELU, then the cast back).
REGION = """
    func @f(%x: bf16[8,16], %w: bf16[16,24], %b: bf16[24]) -> ({out}) {{
      %0: {out} = fused[name="matmul0"] %x, %w, %b {{
        ^(%in0: bf16[8,16], %in1: bf16[16,24], %in2: bf16[24]):
        %0: bf16[8,24] = matmul %in0, %in1
        %1: bf16[8,24] = add %in2, %0
        %2: f32[8,24] = cast[dtype="f32"] %1
        %3: f32[] = full[value=0.5]
        %4: f32[8,24] = mul %2, %3
        %5: f32[] = full[value=0.7071067811865476]
        %6: f32[8,24] = mul {z_order}
        %7: f32[8,24] = erf %6
        %8: f32[] = full[value=1.0]
        %9: f32[8,24] = add %7, %8
        %10: f32[8,24] = mul %9, %4
        {tail}
      }}
      return %0
    }}
    """


def test_a_gelu_rounded_to_bf16_in_a_matmul_region_folds():
    # Either operand order of the products and the sum; the constants only it read go too.
    rec = run_golden("gelu_bf16", REGION.format(out="bf16[8,24]", z_order="%5, %2",
                                                tail='%11: bf16[8,24] = cast[dtype="bf16"] %10\n        yield %11'), """
        func @f(%x: bf16[8,16], %w: bf16[16,24], %b: bf16[24]) -> (bf16[8,24]) [device="cpu"] {
          %0: bf16[8,24] = fused[name="matmul0"] %x, %w, %b {
            ^(%in0: bf16[8,16], %in1: bf16[16,24], %in2: bf16[24]):
            %0: bf16[8,24] = matmul %in0, %in1
            %1: bf16[8,24] = add %in2, %0
            %2: f32[8,24] = cast[dtype="f32"] %1
            %3: f32[8,24] = gelu[accuracy="bf16"] %2
            %4: bf16[8,24] = cast[dtype="bf16"] %3
            yield %4
          }
          return %0
        }
        """)
    assert rec.stats == {"folded": 1}


def test_a_gelu_kept_at_f32_or_f16_or_read_otherwise_stays():
    # Its result yielded as f32, cast to f16 (more bits than the bound allows for), or an
    # intermediate (the erf) also read by another op: exact, as written.
    for out, tail in [
            ("f32[8,24]", "yield %10"),
            ("f16[8,24]", '%11: f16[8,24] = cast[dtype="f16"] %10\n        yield %11'),
            ("bf16[8,24]", '%11: f32[8,24] = add %10, %7\n        %12: bf16[8,24] = cast[dtype="bf16"] %11\n'
                           '        yield %12')]:
        rec = run_golden("gelu_bf16", REGION.format(out=out, z_order="%2, %5", tail=tail), None)
        assert rec.stats == {"folded": 0}


def test_a_gelu_outside_a_matmul_region_or_with_other_constants_stays():
    # A pointwise region (memory-bound: nothing to gain), and a matmul region whose "GELU" scales
    # by 0.7 (not 1/sqrt(2)).
    run_golden("gelu_bf16", """
        func @f(%x: f32[8,24]) -> (bf16[8,24]) {
          %0: bf16[8,24] = fused[name="pointwise0"] %x {
            ^(%in0: f32[8,24]):
            %0: f32[] = full[value=0.5]
            %1: f32[8,24] = mul %in0, %0
            %2: f32[] = full[value=0.7071067811865476]
            %3: f32[8,24] = mul %in0, %2
            %4: f32[8,24] = erf %3
            %5: f32[] = full[value=1.0]
            %6: f32[8,24] = add %4, %5
            %7: f32[8,24] = mul %1, %6
            %8: bf16[8,24] = cast[dtype="bf16"] %7
            yield %8
          }
          return %0
        }
        """, None)
    text = REGION.format(out="bf16[8,24]", z_order="%2, %5",
                         tail='%11: bf16[8,24] = cast[dtype="bf16"] %10\n        yield %11')
    run_golden("gelu_bf16", text.replace("0.7071067811865476", "0.7"), None)
