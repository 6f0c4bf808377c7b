"""Where numba caches the compiled engine, and keeping that cache consistent with the
formulas it compiles.

Where. numba chooses the folder of a ``cache=True`` function itself (its cache locators):
``$NUMBA_CACHE_DIR`` when set, else the ``__pycache__`` folder beside the source file, else
a per-user folder (``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``), the first one it can
write. Where it can write none (a read-only install in a container with a read-only home),
decorating a ``cache=True`` function raises "cannot cache function ...: no locator
available". So, once at import, :func:`numba_cache_dir` asks numba's own cache machinery
which folder it would use for a file of this package (all the engine's files share that
folder); where there is none, :data:`CACHE` is False, every kernel is compiled in memory
(``cache=False``) in each process, and a warning says how to keep it. Nothing here changes
numba's configuration, so the rest of the process caches as it did.

Consistency. numba keys a cached function by its own source file only. The engine
compiles the datafits', penalties' and rule's formulas from other files, so an edit there
would leave a stale engine in the cache. At import, a digest of those sources is compared
with the one stored beside the cache; on a mismatch the cached engine files are deleted
(recompiled on first use).
"""

import hashlib
import warnings
from pathlib import Path

from numba.core.caching import FunctionCache

_PACKAGE = Path(__file__).resolve().parent
_SOURCES = ("_compiled.py", "_engine.py", "_intercept.py", "_rule.py", "datafits.py",
            "penalties.py")
_STAMP = "sr2learn-engine.digest"


def numba_cache_dir():
    """The folder numba would cache this package's compiled functions in, or None when it
    can write none. numba creates the folder (and checks it is writable) on the way."""
    try:
        # Any function of this package's folder will do: the locator depends on the file.
        return Path(FunctionCache(numba_cache_dir).cache_path)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return None


CACHE_DIR = numba_cache_dir()
#: Whether the compiled kernels are cached on disk (the ``cache`` option of every kernel).
CACHE = CACHE_DIR is not None

if not CACHE:
    warnings.warn(
        "sr2learn: numba can write no cache folder (the package folder, $NUMBA_CACHE_DIR "
        "and the user cache folder are all read-only), so the SR2 engine is compiled "
        "anew in each process. Set NUMBA_CACHE_DIR to a writable folder to keep it.",
        UserWarning,
        stacklevel=2,
    )


def _digest():
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update((_PACKAGE / name).read_bytes())
    return h.hexdigest()


def drop_stale_kernels(cache_dir=CACHE_DIR):
    """Delete the cached engine files in ``cache_dir`` (by default numba's cache folder
    for this package) when the formulas' sources changed; returns whether anything was
    deleted. Nothing to do without an on-disk cache, or where it cannot be written."""
    if cache_dir is None:
        return False
    cache_dir = Path(cache_dir)
    stamp = cache_dir / _STAMP
    try:
        digest = _digest()
        if stamp.exists() and stamp.read_text() == digest:
            return False
        removed = False
        for pattern in ("_engine.*.nb[ic]", "_compiled.*.nb[ic]", "_intercept.*.nb[ic]",
                        "datafits.*.nb[ic]", "penalties.*.nb[ic]"):  # fmt: skip
            for path in cache_dir.glob(pattern):
                path.unlink(missing_ok=True)
                removed = True
        cache_dir.mkdir(parents=True, exist_ok=True)
        stamp.write_text(digest)
        return removed
    except OSError:
        return False
