from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shoprec.models.base import top_k


def reference(scores: np.ndarray, k: int, tie_rank: np.ndarray) -> list[list[int]]:
    """Sort every row by (-score, tie rank) in plain Python; drop non-finite scores."""
    result = []
    for row in scores:
        pairs = sorted(
            (-float(s), int(tie_rank[i]), i) for i, s in enumerate(row) if np.isfinite(s)
        )
        chosen = [i for _, _, i in pairs[:k]]
        result.append(chosen + [-1] * (min(k, row.size) - len(chosen)))
    return result


@settings(max_examples=200, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(1, 12)),
        elements=st.sampled_from([0.0, 1.0, 2.0, 2.5, -1.0, float("-inf")]),
    ),
    st.integers(1, 14),
)
def test_top_k_matches_a_plain_sort(scores: np.ndarray, k: int) -> None:
    tie_rank = np.random.default_rng(scores.size).permutation(scores.shape[1])
    items, values = top_k(scores, k, tie_rank)
    assert items.tolist() == reference(scores, k, tie_rank)
    for row, chosen in enumerate(items):
        ok = chosen >= 0
        assert np.array_equal(values[row][ok], scores[row, chosen[ok]])
        assert np.all(np.isneginf(values[row][~ok]))
