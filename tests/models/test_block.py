"""The dense block of a CSR matrix that explanations read, against scipy's own indexing."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from shoprec.models.base import Recommender


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 30),
    st.floats(0.0, 1.0),
    st.integers(0, 2**31 - 1),
)
def test_block_equals_fancy_indexing(n_rows: int, n_cols: int, density: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = sp.random(n_rows, n_cols, density=density, format="csr", random_state=rng)
    rows = rng.choice(n_rows, size=rng.integers(0, n_rows + 1), replace=True)
    columns = rng.choice(n_cols, size=rng.integers(0, n_cols + 1), replace=False)
    expected = matrix[rows][:, columns].toarray()
    np.testing.assert_array_equal(Recommender._dense_block(matrix, rows, columns), expected)
