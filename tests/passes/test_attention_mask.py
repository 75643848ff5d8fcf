"""attention_mask.classify: a mask's meaning, asked once per mask, not once per layer."""
from textwrap import dedent

from ember.ir import parse
from ember.passes import attention_mask

CAUSAL = """
    func @f(%x: f32[4,4]) -> (b1[4,4], b1[4,4]) {
      %0: i64[4,4] = iota[dim=1]
      %1: i64[4,4] = iota[dim=0]
      %2: b1[4,4] = le %0, %1
      %3: b1[4,4] = lt %0, %1
      return %2, %3
    }
    """


def test_every_layer_asking_about_one_mask_evaluates_and_classifies_it_once(monkeypatch):
    g = parse(dedent(CAUSAL))
    causal, strict = g.outputs
    shape = tuple(causal.type.shape)
    calls = []
    real = attention_mask._classify
    monkeypatch.setattr(attention_mask, "_classify", lambda *a: calls.append(a[0]) or real(*a))
    cache: dict = {}
    first = attention_mask.classify(causal, False, shape, g.ops, cache)
    assert first.value is None and first.causal
    first.causal = False  # the caller's copy: changing it leaves the remembered answer alone
    for _ in range(11):
        again = attention_mask.classify(causal, False, shape, g.ops, cache)
        assert again.value is None and again.causal and again is not first
    assert calls == [causal]
    # Another value, or the same one negated, is another question.
    other = attention_mask.classify(strict, False, shape, g.ops, cache)
    assert other.value is strict and not other.causal and other.empty_rows is True  # row 0 keeps nothing
    negated = attention_mask.classify(causal, True, shape, g.ops, cache)
    assert negated.value is causal and not negated.causal
    assert calls == [causal, strict, causal]
    # Without a cache nothing is remembered.
    attention_mask.classify(causal, False, shape, g.ops)
    assert len(calls) == 4
