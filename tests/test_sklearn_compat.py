"""scikit-learn API compliance: the full estimator check suite, with no expected failures.

The checks compare two fits (weighted vs repeated samples, ...) to rtol 1e-7 on tiny
problems (15 x 30) with more features than samples. Both run the full batch (deterministic
R2 steps), so weighted and repeated data take the same steps up to rounding, and they agree
as long as rounding has not yet been amplified. The regressor passes at its default alpha
with tol=1e-14. The classifier (3 classes) runs at alpha=0.1 with tol=1e-10: at the default
alpha its problem is nearly separable, SR2 (a first-order method) reaches a relative gap of
only 1e-6 in 5000 epochs, and by then the two trajectories have drifted apart by rounding;
at tol=1e-14 the gap reaches its rounding floor (it reads 0) while the two points still
differ by 1e-7. Nonconvex penalties are not in the list: weighted and repeated data start
different trajectories, which may end in different local minima.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sr2learn import SR2Classifier, SR2Regressor

CHECKED = [
    SR2Classifier(alpha=0.1, tol=1e-10),
    SR2Regressor(tol=1e-14),
]


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: {})
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
