"""The CSR shortcuts of the serving path (the dense block that explanations read, one row's
product), against scipy's own operations."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from shoprec.models.base import Recommender, row_product


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


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 40),
    st.floats(0.0, 1.0),
    st.integers(0, 2**31 - 1),
)
def test_row_product_equals_scipy(n: int, density: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    matrix = sp.random(n, n, density=density, format="csr", random_state=rng, dtype=np.float32)
    columns = rng.choice(n, size=rng.integers(0, n + 1), replace=False)
    values = rng.random(columns.size).astype(np.float32)
    row = sp.csr_matrix((values, (np.zeros(columns.size, int), columns)), shape=(1, n))
    expected = sp.csr_matrix(row @ matrix)
    expected.sort_indices()
    indices, data = row_product(matrix, row.indices, row.data)  # as the engine passes a row
    kept = data != 0  # scipy drops sums that are exactly zero
    np.testing.assert_array_equal(indices[kept], expected.indices)
    np.testing.assert_array_equal(data[kept], expected.data)  # the same float32 sums
