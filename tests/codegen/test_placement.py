"""Arena placement (codegen/placement.py): buffers live at the same time never share bytes, and
the arena stays close to the most bytes live at once."""
import random

from ember.codegen.placement import ALIGN, Interval, aligned, place


def live_peak(intervals) -> int:
    steps = range(max(it.last for it in intervals) + 1)
    return max(sum(aligned(it.nbytes) for it in intervals if it.first <= s <= it.last) for s in steps)


def assert_disjoint_when_live_together(intervals, offsets, arena):
    for i, a in enumerate(intervals):
        assert offsets[a.key] % ALIGN == 0 and offsets[a.key] + aligned(a.nbytes) <= arena
        for b in intervals[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                lo_a, lo_b = offsets[a.key], offsets[b.key]
                assert lo_a + aligned(a.nbytes) <= lo_b or lo_b + aligned(b.nbytes) <= lo_a, (a, b)


def test_random_programs_are_placed_soundly_and_tightly():
    rng = random.Random(0)
    for trial in range(200):
        intervals = []
        for k in range(rng.randint(1, 40)):
            first = rng.randint(0, 30)
            intervals.append(Interval(k, rng.choice([1, 100, 512, 4096, 65536, 3 << 20]) * rng.randint(1, 3),
                                      first, first + rng.randint(0, 8)))
        offsets, arena = place(intervals)
        assert_disjoint_when_live_together(intervals, offsets, arena)
        peak = live_peak(intervals)
        # Never below what is live at once; greedy-by-size stays well within the sum of all.
        assert peak <= arena <= sum(aligned(it.nbytes) for it in intervals)
        assert arena <= 2 * peak, (trial, arena, peak)


def test_a_large_late_output_lands_on_dead_intermediates():
    # A model's logits: written by the last op, live to the end, far larger than anything before.
    # Only the hidden state it is computed from is live with it: the arena is those two, not the
    # sum of everything (what a pool of separate blocks grows to).
    chain = [Interval(f"h{i}", 6 << 20, i, i + 1) for i in range(24)]
    logits = Interval("logits", 393 << 20, 24, 25)
    offsets, arena = place(chain + [logits])
    assert arena == (393 + 6) << 20
    assert offsets["logits"] == 0   # largest first: the earlier buffers share its bytes


def test_placement_is_deterministic():
    intervals = [Interval(k, 1024 * (k % 3 + 1), k % 5, k % 5 + 2) for k in range(12)]
    assert place(intervals) == place(list(reversed(intervals)))


def test_nothing_to_place():
    assert place([]) == ({}, 0)
