"""What an install without the [torch] extra, or installed read-only, can do.

Each check runs in a fresh interpreter (a subprocess of ``sys.executable``), so that what
it imports and which folders it can write are those of the case tested:

- without torch and skorch (a finder refuses them, as if they were not installed), the
  core imports and fits, ``python -m sr2learn`` runs, and ``sr2learn.torch`` /
  ``sr2learn.skorch`` raise an ImportError that names the ``[torch]`` extra;
- a copy of the package in a folder nobody may write, with a home that cannot be written:
  it imports and fits with the engine compiled in memory; with a writable user cache
  folder, numba caches there (and the next process loads from it).

The tests run as root on some machines, and root ignores file permissions: there the
subprocess drops CAP_DAC_OVERRIDE (the capability that ignores them) from its bounding set
before it starts, so it stays root but honours permissions. Each read-only subprocess
first checks that it really cannot write the package folder, and the test is skipped
where that cannot be arranged.
"""

import ctypes
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE_MODULES = ("linear_model", "cross_validation", "datasets", "diagnostics", "penalties",
                "datafits", "__main__")  # fmt: skip
# The exit status of a subprocess that finds it can write what should be read-only.
CANNOT_PROTECT = 77

# A prelude that makes torch and skorch (or only the modules in sys.argv[1]) uninstalled
# for this interpreter: a finder ahead of the others refuses them.
REFUSE_MODULES = """
import sys

REFUSED = tuple(sys.argv[1].split(","))

class RefuseModules:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, RefuseModules())
"""

CORE_WITHOUT_TORCH = """
import contextlib
import importlib
import io
import json

import numpy as np

import sr2learn
from sr2learn import SR2Classifier, SR2Regressor

for module in CORE_MODULES:
    importlib.import_module(f"sr2learn.{module}")
X = np.random.default_rng(0).normal(size=(40, 3))
clf = SR2Classifier(penalty="l1", alpha=1e-3, random_state=0).fit(X, X[:, 0] > 0)
reg = SR2Regressor(penalty="l1", alpha=1e-3, random_state=0).fit(X, X[:, 0])
demo = io.StringIO()
with contextlib.redirect_stdout(demo):
    importlib.import_module("sr2learn.__main__").main()
errors = {}
for extra in ("sr2learn.torch", "sr2learn.skorch"):
    try:
        importlib.import_module(extra)
    except ImportError as error:
        errors[extra] = [str(error), repr(error.__cause__)]
print(json.dumps({
    "file": sr2learn.__file__,
    "clf_score": clf.score(X, X[:, 0] > 0),
    "reg_score": reg.score(X, X[:, 0]),
    "demo": demo.getvalue(),
    "errors": errors,
}))
"""

SKORCH_WITHOUT_SKORCH = """
import sr2learn.torch

try:
    import sr2learn.skorch
except ImportError as error:
    print(error)
"""

# A fit in a fresh interpreter whose working folders are given in the environment; the
# smallest compile of the engine (squared loss, l1).
READ_ONLY_FIT = """
import json
import os
import sys
import tempfile
import warnings

package = sys.argv[1]
try:
    tempfile.TemporaryFile(dir=package).close()
except PermissionError:
    pass
else:
    sys.exit(CANNOT_PROTECT)

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import numpy as np

    import sr2learn
    from sr2learn import SR2Regressor, _cache, _engine

X = np.random.default_rng(0).normal(size=(40, 3))
reg = SR2Regressor(penalty="l1", alpha=1e-3, random_state=0).fit(X, X[:, 0])
print(json.dumps({
    "file": sr2learn.__file__,
    "score": reg.score(X, X[:, 0]),
    "cache": _cache.CACHE,
    "cache_dir": None if _cache.CACHE_DIR is None else str(_cache.CACHE_DIR),
    "engine_cache_hits": sum(_engine.sr2_epoch.stats.cache_hits.values()),
    "warnings": [str(w.message) for w in caught if w.category is UserWarning],
}))
"""


def _program(*parts):
    constants = f"CORE_MODULES = {CORE_MODULES!r}\nCANNOT_PROTECT = {CANNOT_PROTECT}\n"
    return constants + "".join(textwrap.dedent(part) for part in parts)


def _honour_permissions():
    """In the child before it starts: as root, give up CAP_DAC_OVERRIDE (dropped from
    the bounding set, root's next program never gets it), so file permissions apply."""
    if os.geteuid() == 0 and sys.platform.startswith("linux"):
        PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1
        ctypes.CDLL(None).prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0)


def _run(program, *args, env, cwd, read_only=False):
    completed = subprocess.run(
        [sys.executable, "-c", program, *args], env=env, cwd=cwd, capture_output=True,
        text=True, timeout=600, preexec_fn=_honour_permissions if read_only else None,
    )  # fmt: skip
    if completed.returncode == CANNOT_PROTECT:
        pytest.skip("cannot make a folder unwritable for a subprocess here")
    assert completed.returncode == 0, completed.stderr
    return completed


def _environment(pythonpath, **variables):
    # numba's cache folders come from NUMBA_CACHE_DIR, XDG_CACHE_HOME and HOME: only
    # those the test gives.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("NUMBA_") and key != "XDG_CACHE_HOME"}  # fmt: skip
    env.update(PYTHONPATH=str(pythonpath), PYTHONDONTWRITEBYTECODE="1", **variables)
    return env


@pytest.mark.slow
def test_core_imports_and_fits_without_torch(tmp_path):
    env = _environment(REPO)
    result = json.loads(_run(_program(REFUSE_MODULES, CORE_WITHOUT_TORCH), "torch,skorch",
                             env=env, cwd=tmp_path).stdout)  # fmt: skip
    assert Path(result["file"]).parent == REPO / "sr2learn"
    assert result["clf_score"] > 0.9 and result["reg_score"] > 0.9
    assert "breast_cancer" in result["demo"] and "l0" in result["demo"]
    assert set(result["errors"]) == {"sr2learn.torch", "sr2learn.skorch"}
    for message, cause in result["errors"].values():
        assert 'pip install "sr2learn[torch]"' in message
        assert "ModuleNotFoundError" in cause  # the original error is chained
    assert "needs torch" in result["errors"]["sr2learn.torch"][0]


@pytest.mark.slow
def test_skorch_module_without_skorch_names_skorch(tmp_path):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    completed = _run(_program(REFUSE_MODULES, SKORCH_WITHOUT_SKORCH), "skorch",
                     env=_environment(REPO), cwd=tmp_path)  # fmt: skip
    assert "sr2learn.skorch needs skorch" in completed.stdout
    assert 'pip install "sr2learn[torch]"' in completed.stdout


@pytest.fixture
def read_only_package(tmp_path):
    """A copy of the package in ``tmp_path / "site"``, every folder and file read-only,
    and an empty read-only home ``tmp_path / "home"``."""
    site, home = tmp_path / "site", tmp_path / "home"
    shutil.copytree(REPO / "sr2learn", site / "sr2learn",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    home.mkdir()
    protected = [home, site, *site.rglob("*")]
    for path in protected:
        mode = stat.S_IMODE(path.stat().st_mode)
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield site / "sr2learn", home
    for path in protected:  # let pytest delete it
        path.chmod(stat.S_IMODE(path.stat().st_mode) | stat.S_IWUSR)


def _fit_read_only(package, home, **variables):
    env = _environment(package.parent, HOME=str(home), **variables)
    completed = _run(_program(READ_ONLY_FIT), str(package), env=env, cwd=home, read_only=True)
    result = json.loads(completed.stdout)
    assert Path(result["file"]).parent == package
    assert result["score"] > 0.9
    return result


@pytest.mark.slow
def test_read_only_install_compiles_in_memory(read_only_package):
    package, home = read_only_package
    # numba's user cache folder would be home/.cache/numba, in the read-only home.
    result = _fit_read_only(package, home)
    assert not result["cache"] and result["cache_dir"] is None
    assert any("NUMBA_CACHE_DIR" in message for message in result["warnings"])
    assert list(home.iterdir()) == []
    assert not (package / "__pycache__").exists()


@pytest.mark.slow
def test_read_only_install_caches_in_the_user_cache(read_only_package, tmp_path):
    package, home = read_only_package
    user_cache = tmp_path / "user-cache"
    first = _fit_read_only(package, home, XDG_CACHE_HOME=str(user_cache))
    assert first["cache"] and first["warnings"] == []
    cache_dir = Path(first["cache_dir"])
    assert cache_dir.parent == user_cache / "numba"
    assert (cache_dir / "sr2learn-engine.digest").is_file()
    assert list(cache_dir.glob("_engine.sr2_epoch-*.nbi"))
    assert first["engine_cache_hits"] == 0
    # The next process loads the engine from that cache instead of compiling it.
    second = _fit_read_only(package, home, XDG_CACHE_HOME=str(user_cache))
    assert second["cache_dir"] == first["cache_dir"]
    assert second["engine_cache_hits"] > 0


def test_numba_cache_dir_is_respected(tmp_path):
    env = _environment(REPO, NUMBA_CACHE_DIR=str(tmp_path / "numba"))
    program = "from sr2learn import _cache; print(_cache.CACHE_DIR)"
    completed = _run(program, env=env, cwd=tmp_path)
    assert Path(completed.stdout.strip()).parent == tmp_path / "numba"
