"""Keep numba's on-disk cache of the engine consistent with the formulas it compiles.

numba keys a cached function by its own source file only. The engine compiles the
datafits', penalties' and rule's formulas from other files, so an edit there would leave a
stale engine in the cache. At import, a digest of those sources is compared with the one
stored beside the cache; on a mismatch the cached engine files are deleted (recompiled on
first use). Where the cache directory cannot be written, nothing is done: numba then
caches elsewhere or not at all.
"""

import hashlib
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_SOURCES = ("_compiled.py", "_engine.py", "_intercept.py", "_rule.py", "datafits.py",
            "penalties.py")
_STAMP = "sr2learn-engine.digest"


def _digest():
    h = hashlib.sha256()
    for name in _SOURCES:
        h.update((_PACKAGE / name).read_bytes())
    return h.hexdigest()


def drop_stale_kernels(cache_dir=None):
    """Delete the cached engine files when the formulas' sources changed; returns whether
    anything was deleted."""
    cache_dir = Path(cache_dir) if cache_dir is not None else _PACKAGE / "__pycache__"
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
        cache_dir.mkdir(exist_ok=True)
        stamp.write_text(digest)
        return removed
    except OSError:
        return False
