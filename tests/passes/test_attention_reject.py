"""attention: subgraphs that look like attention but must stay as they are (and say why)."""
from pass_testing import run_golden

# transformers' eager attention over [B*H, L, D] (3-d, as the frontend lowers a 4-d matmul);
# the tests below break one condition at a time.
EAGER = """
    func @f(%q: f32[6,5,4], %k: f32[6,5,4], %v: f32[6,5,4], %m: f32[6,5,5]) -> (f32[6,5,4]) {
      %0: f32[6,4,5] = permute[dims=(0, 2, 1)] %k
      %1: f32[6,5,5] = matmul %q, %0
      %2: f32[] = full[value=0.5]
      %3: f32[6,5,5] = mul %1, %2
      %4: f32[6,5,1] = reduce_max[axes=(2,), keepdim=True] %3
      %5: f32[6,5,5] = sub %3, %4
      %6: f32[6,5,5] = exp %5
      %7: f32[6,5,1] = reduce_sum[axes=(2,), keepdim=True] %6
      %8: f32[6,5,5] = div %6, %7
      %9: f32[6,5,4] = matmul %8, %v
      return %9
    }
    """


def _rejected(text: str) -> str:
    rec = run_golden("attention", text, None)
    assert rec.stats["matched"] == 0
    return rec.details["rejected"][0]["reason"] if rec.details["rejected"] else ""


def test_the_base_case_matches():
    rec = run_golden("attention", EAGER, """
        func @f(%q: f32[6,5,4], %k: f32[6,5,4], %v: f32[6,5,4], %m: f32[6,5,5]) -> (f32[6,5,4]) [device="cpu"] {
          %0: f32[6,5,4] = extern[args=[#0, #1, #2], kwargs={"scale": 0.5}, reason="attention: SDPA, ember's flash-attention template or the library (codegen chooses)", target="aten.scaled_dot_product_attention.default"] %q, %k, %v
          return %0
        }
        """)
    assert rec.stats["eager"] == 1


def test_scores_or_probabilities_also_returned():
    two = EAGER.replace("-> (f32[6,5,4])", "-> (f32[6,5,4], f32[6,5,5])")
    assert "score matrix" in _rejected(two.replace("return %9", "return %9, %1"))
    assert "softmax intermediate" in _rejected(two.replace("return %9", "return %9, %3"))
    assert "probabilities" in _rejected(two.replace("return %9", "return %9, %8"))


def test_a_value_used_twice():
    # The exponentials also feed another output: the softmax cannot disappear.
    text = EAGER.replace("-> (f32[6,5,4])", "-> (f32[6,5,4], f32[6,5,5])").replace(
        "return %9", "%10: f32[6,5,5] = mul %6, %6\n      return %9, %10")
    assert "softmax intermediate" in _rejected(text)


def test_softmax_over_another_axis():
    text = EAGER.replace("%4: f32[6,5,1] = reduce_max[axes=(2,), keepdim=True] %3",
                         "%4: f32[6,1,5] = reduce_max[axes=(1,), keepdim=True] %3").replace(
        "%7: f32[6,5,1] = reduce_sum[axes=(2,), keepdim=True] %6",
        "%7: f32[6,1,5] = reduce_sum[axes=(1,), keepdim=True] %6")
    assert "last axis" in _rejected(text)


def test_a_mask_that_broadcasts_the_scores_to_another_shape():
    text = EAGER.replace("%q: f32[6,5,4], %k: f32[6,5,4]", "%q: f32[1,5,4], %k: f32[1,5,4]").replace(
        "%0: f32[6,4,5] = permute[dims=(0, 2, 1)] %k\n      %1: f32[6,5,5] = matmul %q, %0",
        "%0: f32[1,4,5] = permute[dims=(0, 2, 1)] %k\n      %e: f32[1,5,5] = matmul %q, %0\n"
        "      %1: f32[6,5,5] = add %e, %m")
    assert "broadcasts" in _rejected(text)


def test_the_mask_before_the_scale():
    # (s + m) * c scales the mask too; SDPA adds the mask after scaling.
    text = EAGER.replace("%1: f32[6,5,5] = matmul %q, %0",
                         "%1a: f32[6,5,5] = matmul %q, %0\n      %1: f32[6,5,5] = add %1a, %m")
    assert "after the mask" in _rejected(text)


def test_something_between_softmax_and_the_second_matmul():
    # A head mask (or dropout) times the probabilities: not attention as SDPA computes it.
    text = EAGER.replace("%9: f32[6,5,4] = matmul %8, %v",
                         "%8a: f32[6,5,5] = mul %8, %m\n      %9: f32[6,5,4] = matmul %8a, %v")
    run_golden("attention", text, None)


def test_plain_softmax_with_a_mask_that_can_empty_a_row():
    # masked_fill(mask, -inf) from an input: a fully masked row is NaN here, 0 in SDPA.
    text = EAGER.replace("%m: f32[6,5,5]", "%m: b1[6,5,5]").replace(
        "%3: f32[6,5,5] = mul %1, %2",
        "%3a: f32[6,5,5] = mul %1, %2\n      %n: f32[] = full[value=-inf]\n"
        "      %3: f32[6,5,5] = where %m, %n, %3a")
    assert "fully masked row" in _rejected(text)


def test_an_f32_mask_for_bf16_attention():
    # SDPA wants a float mask in q's dtype; rounding an f32 mask to bf16 would change it.
    text = EAGER.replace("f32[6,5,4]", "bf16[6,5,4]").replace("%0: f32[6,4,5]", "%0: bf16[6,4,5]").replace(
        "%1: f32[6,5,5] = matmul %q, %0\n      %2: f32[] = full[value=0.5]\n      %3: f32[6,5,5] = mul %1, %2",
        "%1: bf16[6,5,5] = matmul %q, %0\n      %1f: f32[6,5,5] = cast[dtype=\"f32\"] %1\n"
        "      %2: f32[] = full[value=0.5]\n      %3a: f32[6,5,5] = mul %1f, %2\n"
        "      %3: f32[6,5,5] = add %3a, %m").replace(
        "%9: bf16[6,5,4] = matmul %8, %v",
        "%8b: bf16[6,5,5] = cast[dtype=\"bf16\"] %8\n      %9: bf16[6,5,4] = matmul %8b, %v")
    assert "dtype f32" in _rejected(text)
