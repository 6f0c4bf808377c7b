"""
====================================================
Choosing the penalty and alpha with GridSearchCV
====================================================

SR2 estimators are ordinary scikit-learn estimators: put one in a ``Pipeline`` after a
``StandardScaler`` and let ``GridSearchCV`` pick the penalty and its strength. The plot
shows the cross-validated accuracy against alpha for each penalty, and how many
coefficients the model keeps. ``SR2ClassifierCV`` does the alpha part of this search
faster, with warm-started paths.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sr2learn import SR2Classifier

X, y = load_breast_cancer(return_X_y=True)
pipe = make_pipeline(StandardScaler(), SR2Classifier(tol=1e-4, random_state=0))
alphas = np.geomspace(1e-3, 3e-1, 6)
grid = GridSearchCV(
    pipe,
    {"sr2classifier__penalty": ["l1", "l0", "l1/2"], "sr2classifier__alpha": alphas},
    cv=5,
    n_jobs=2,
).fit(X, y)
print(f"best: {grid.best_params_}, cross-validated accuracy {grid.best_score_:.3f}")
print(f"kept {np.count_nonzero(grid.best_estimator_[-1].coef_)} of {X.shape[1]} features")

results = grid.cv_results_
fig, (ax_score, ax_nnz) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
for penalty in ("l1", "l0", "l1/2"):
    rows = np.flatnonzero(results["param_sr2classifier__penalty"] == penalty)
    ax_score.semilogx(alphas, results["mean_test_score"][rows], "o-", label=penalty)
    nnz = [
        np.count_nonzero(
            pipe.set_params(sr2classifier__penalty=penalty, sr2classifier__alpha=a)
            .fit(X, y)[-1]
            .coef_
        )
        for a in alphas
    ]
    ax_nnz.semilogx(alphas, nnz, "o-", label=penalty)
ax_score.set(xlabel="alpha", ylabel="mean CV accuracy", title="GridSearchCV")
ax_nnz.set(xlabel="alpha", ylabel="nonzero coefficients (full data)", title="Model size")
ax_score.legend()
ax_nnz.legend()
plt.show()
