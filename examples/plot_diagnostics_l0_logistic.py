"""
=======================================================
How stationary is an l0 logistic model? The diagnostics
=======================================================

Fit an l0-penalised logistic regression on the Adult census data (income > 50K from
one-hot encoded attributes) with :class:`sr2learn.SR2Classifier`, then read its
convergence diagnostics: the per-step sigma and acceptance ratio rho, the scale-free
stopping criterion compared to ``tol`` (for l0, the stationarity measure relative to the
intercept-only model's gradient), and the paper's Theorem 4 bound beside the measured
distance dist(0, ∂F(w + s)).

:func:`sr2learn.datasets.load_adult` downloads the data on first use (about 28 MB,
through pip) and reads them from its cache afterwards.
"""

import matplotlib.pyplot as plt

from sr2learn import SR2Classifier
from sr2learn.datasets import load_adult

X, y, names = load_adult(subset="train")
X_test, y_test, _ = load_adult(subset="test")

clf = SR2Classifier(penalty="l0", alpha=1e-3, random_state=0).fit(X, y)
print(f"{X.shape[0]} samples, {X.shape[1]} one-hot features")
print(
    f"test accuracy {clf.score(X_test, y_test):.3f} with {int((clf.coef_ != 0).sum())} "
    f"nonzero coefficients out of {X.shape[1]}\n"
)
print(clf.diagnostics_.summary())

# %%
# The four panels: sigma (the inverse step size) shrinks by gamma3 after very successful
# steps (rho >= eta2), down to its floor L/(2b), and jumps by gamma1 after a rejection; rho
# is close to 1 for most steps; the criterion falls linearly (variance reduction removes
# the gradient noise); and the measured squared distance
# dist(0, ∂F(w+s))^2 stays below the Theorem 4 bound computed for the same step.
fig = clf.diagnostics_.plot()
fig.suptitle("SR2, l0 logistic regression on Adult")
plt.show()
