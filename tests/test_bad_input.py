"""Bad or extreme input to SR2Regressor / SR2Classifier: the caller's data is left alone,
a failed fit leaves no half-fitted model, and input SR2 cannot handle is refused with an
error that names it (issue "Honest by default", item 5)."""

import numpy as np
import pytest
import scipy.sparse as sp

from sr2learn import SR2Classifier, SR2Regressor

# -- the caller's sparse matrix ------------------------------------------------------------


def non_canonical_csr(X):
    """X as a CSR matrix whose rows hold their entries in reverse order, each one split
    into two duplicates that sum to it."""
    X = sp.csr_matrix(X)
    data, indices, indptr = [], [], [0]
    for i in range(X.shape[0]):
        row = slice(X.indptr[i], X.indptr[i + 1])
        for j, v in zip(X.indices[row][::-1], X.data[row][::-1], strict=True):
            data += [0.25 * v, 0.75 * v]
            indices += [j, j]
        indptr.append(len(data))
    out = sp.csr_matrix((np.array(data), np.array(indices), np.array(indptr)), shape=X.shape)
    assert not out.has_sorted_indices and not out.has_canonical_format
    return out


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("Estimator", [SR2Regressor, SR2Classifier])
def test_fit_partial_fit_and_predict_leave_a_non_canonical_sparse_X_unchanged(
    Estimator, diabetes, breast_cancer
):
    X, y = diabetes if Estimator is SR2Regressor else breast_cancer
    X = np.where(np.abs(X) > 0.5, X, 0.0)[:200]
    y = y[:200]
    Xs = non_canonical_csr(X)
    data, indices, indptr = Xs.data.copy(), Xs.indices.copy(), Xs.indptr.copy()

    def unchanged():
        np.testing.assert_array_equal(Xs.data, data)
        np.testing.assert_array_equal(Xs.indices, indices)
        np.testing.assert_array_equal(Xs.indptr, indptr)

    est = Estimator(alpha=1e-2, random_state=0, max_iter=20).fit(Xs, y)
    unchanged()
    ref = Estimator(alpha=1e-2, random_state=0, max_iter=20).fit(sp.csr_matrix(X), y)
    np.testing.assert_array_equal(est.coef_, ref.coef_)
    np.testing.assert_array_equal(est.intercept_, ref.intercept_)
    np.testing.assert_allclose(est.predict(Xs), ref.predict(X))
    unchanged()
    extra = {} if Estimator is SR2Regressor else {"classes": np.unique(y)}
    Estimator(alpha=1e-2, random_state=0).partial_fit(Xs, y, **extra)
    unchanged()
