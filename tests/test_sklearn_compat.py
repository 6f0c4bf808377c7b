"""scikit-learn API compliance: the full estimator check suite, with no expected failures.

The checks compare two fits (weighted vs repeated samples, ...) to rtol 1e-7 on tiny
problems with more features than samples, so the instances are run to a tight ``tol``;
alpha=0.1 keeps those problems well enough conditioned for a first-order method to get
there in about a second. Nonconvex penalties are not in the list: weighted and repeated
data start different trajectories, which may end in different local minima.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sr2learn import SR2Classifier, SR2Regressor

CHECKED = [
    SR2Classifier(alpha=0.1, tol=1e-10),
    SR2Regressor(alpha=0.1, tol=1e-10),
]


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: {})
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
