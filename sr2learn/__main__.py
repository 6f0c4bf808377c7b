"""``python -m sr2learn``: fit l1 and l0 SR2 classifiers on a bundled data set."""

import time

from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from . import SR2Classifier


def main():
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    print(f"breast_cancer: {X_train.shape[0]} training / {X_test.shape[0]} test samples, "
          f"{X.shape[1]} features (standardised)\n")
    header = (f"{'penalty':<8}{'alpha':>8}{'accuracy':>10}{'nonzeros':>10}{'epochs':>8}"
              f"{'criterion':>11}{'tol':>10}{'converged':>11}{'time (s)':>10}")
    print(header)
    print("-" * len(header))
    for penalty, alpha in [("l1", 1e-2), ("l1", 3e-2), ("l0", 1e-2), ("l0", 3e-2)]:
        model = make_pipeline(
            StandardScaler(), SR2Classifier(penalty=penalty, alpha=alpha, random_state=0)
        )
        start = time.perf_counter()
        model.fit(X_train, y_train)
        elapsed = time.perf_counter() - start
        clf = model[-1]
        last = clf.diagnostics_.last_checkpoint()
        print(f"{penalty:<8}{alpha:>8.0e}{model.score(X_test, y_test):>10.3f}"
              f"{int((clf.coef_ != 0).sum()):>7d}/{X.shape[1]:<2d}{clf.n_iter_:>8d}"
              f"{last['criterion']:>11.2e}{clf.diagnostics_.tol:>10.1e}"
              f"{str(clf.diagnostics_.converged):>11}{elapsed:>10.2f}")
    print("\nThe last model's convergence diagnostics:\n")
    print(clf.diagnostics_.summary())


if __name__ == "__main__":
    main()
