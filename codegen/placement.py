"""Offsets in one arena for buffers with known live ranges: buffers live at the same time get
disjoint byte ranges, and the arena should be little more than the most bytes ever live at once.

Finding the smallest arena is NP-hard (it is dynamic storage allocation); the usual greedy answer
does well on the graphs a network makes: take the buffers largest first, and give each the lowest
offset where it overlaps no already placed buffer whose live range meets its own. Placing the big
buffers first lets the small ones fill the gaps between them; placing them in program order would
let early small buffers split the arena where a later large one needed room. Ties go to the buffer
that starts earlier, so the result depends only on the input.

Live ranges are closed step ranges [first, last]: a buffer allocated at step i and one last read
at step i overlap, since that op reads the one while writing the other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

# Every slot starts on a multiple of this: what the CUDA caching allocator gives each block (so a
# buffer is as aligned as a torch.empty one: vector loads, cuBLAS and TMA never see a worse pointer
# than they would from torch), and a multiple of every dtype's size, so the arena's bytes can be
# viewed as any dtype at a slot's offset.
ALIGN = 512


@dataclass(frozen=True)
class Interval:
    key: Hashable
    nbytes: int
    first: int   # step that allocates it
    last: int    # last step that may read it (inclusive)


def aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def place(intervals: list[Interval]) -> tuple[dict[Hashable, int], int]:
    """(key -> byte offset, arena bytes) for `intervals`; offsets and the arena size are multiples
    of ALIGN."""
    placed: list[tuple[int, int, Interval]] = []   # (offset, end offset, interval)
    offsets: dict[Hashable, int] = {}
    top = 0
    for it in sorted(intervals, key=lambda it: (-it.nbytes, it.first, it.last)):
        size = aligned(it.nbytes)
        busy = sorted((o, e) for o, e, other in placed
                      if other.first <= it.last and it.first <= other.last)
        offset = 0
        for o, e in busy:   # lowest gap that fits, scanning the busy ranges by offset
            if offset + size <= o:
                break
            offset = max(offset, e)
        placed.append((offset, offset + size, it))
        offsets[it.key] = offset
        top = max(top, offset + size)
    return offsets, top
