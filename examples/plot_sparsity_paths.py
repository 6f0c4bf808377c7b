"""
==============================================
Sparsity paths: l1 against l0 against l1/2
==============================================

How many coefficients survive as alpha grows, and what accuracy they buy, for the three
sparsity-inducing penalties, on the Adult census data (income > 50K from one-hot
encoded attributes). Each path starts at :func:`sr2learn.alpha_max` (all coefficients
zero) and is warm-started from one alpha to the next, as ``SR2ClassifierCV`` does.

l1 shrinks every surviving coefficient, so it needs more of them for the same accuracy;
l0 and l1/2 select fewer features at equal accuracy. :func:`sr2learn.datasets.load_adult`
downloads the data on first use and reads them from its cache afterwards.
"""

import matplotlib.pyplot as plt
import numpy as np

from sr2learn import SR2Classifier, alpha_max
from sr2learn.datasets import load_adult

X, y, names = load_adult(subset="train")
X_test, y_test, _ = load_adult(subset="test")
X, y = X[:10_000], y[:10_000]  # a subset keeps the example quick

fig, (ax_nnz, ax_acc) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
for penalty in ("l1", "l0", "l1/2"):
    clf = SR2Classifier(penalty=penalty, warm_start=True, tol=1e-4, random_state=0)
    alphas = alpha_max(clf, X, y) * np.geomspace(1.0, 1e-3, 10)
    nnz, accuracy = [], []
    for alpha in alphas:
        clf.set_params(alpha=alpha).fit(X, y)
        nnz.append(int(np.count_nonzero(clf.coef_)))
        accuracy.append(clf.score(X_test, y_test))
    ax_nnz.semilogx(alphas, nnz, "o-", label=penalty)
    ax_acc.plot(nnz, accuracy, "o-", label=penalty)
    print(f"{penalty:5s} nonzeros along the path: {nnz}")

ax_nnz.set(xlabel="alpha", ylabel="nonzero coefficients", title="Sparsity path")
ax_nnz.invert_xaxis()
ax_acc.set(xlabel="nonzero coefficients", ylabel="test accuracy", title="Accuracy vs size")
ax_nnz.legend()
ax_acc.legend()
plt.show()
