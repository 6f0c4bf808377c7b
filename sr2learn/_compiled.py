"""The compiled forms of the datafits and penalties, as the SR2 engine calls them.

Each datafit and penalty class carries a ``Kernel`` (a NamedTuple of its parameters whose
static methods are its formulas, see :mod:`sr2learn.datafits` and
:mod:`sr2learn.penalties`). The generic functions below are what the compiled engine
calls; numba resolves each one, at compile time, to the method of the kernel's class, so
the engine never names a datafit or a penalty, and a new penalty is one new class.
Dispatching on the NamedTuple's type (not on function objects passed as arguments) keeps
the engine cacheable on disk.
"""

from numba.extending import overload

from ._cache import CACHE

__all__ = ["JIT", "loss_derivative", "bregman", "prox_entries", "value_entries", "name_kernel"]

# Cached on disk where numba can write a cache folder (see sr2learn._cache).
JIT = {"cache": CACHE, "error_model": "numpy"}


def name_kernel(cls):
    """Give ``cls.Kernel`` its own name (``L1Kernel``, ``LogisticKernel``...): numba names
    and mangles a NamedTuple type by its class's ``__name__``, so two kernels both called
    ``Kernel`` with the same fields collide (Logistic ran Quadratic's compiled code)."""
    if "Kernel" in cls.__dict__:
        cls.Kernel.__name__ = f"{cls.__name__}Kernel"


def loss_derivative(kernel, z, y, d):
    """l(z, y), writing l'(z, y) into ``d`` (one sample, arrays of length K)."""
    raise NotImplementedError("compiled only")


def bregman(kernel, z, dz, y, d, loss):
    """l(z + dz) - l(z) - l'(z) dz without cancellation (one sample)."""
    raise NotImplementedError("compiled only")


def prox_entries(kernel, v, t, out, count):
    """out[i] = prox(v[i], t[i]) over the first ``count`` entries (the whole vector for a
    non-separable penalty, the engine then passes every entry)."""
    raise NotImplementedError("compiled only")


def value_entries(kernel, w, count):
    """R over the first ``count`` entries of ``w``."""
    raise NotImplementedError("compiled only")


@overload(loss_derivative, jit_options=JIT)
def _loss_derivative(kernel, z, y, d):
    return kernel.instance_class.loss_derivative


@overload(bregman, jit_options=JIT)
def _bregman(kernel, z, dz, y, d, loss):
    return kernel.instance_class.bregman


@overload(prox_entries, jit_options=JIT)
def _prox_entries(kernel, v, t, out, count):
    cls = kernel.instance_class
    if hasattr(cls, "prox_entries"):
        return cls.prox_entries
    prox = cls.prox

    def separable(kernel, v, t, out, count):
        for i in range(count):
            out[i] = prox(kernel, v[i], t[i])

    return separable


@overload(value_entries, jit_options=JIT)
def _value_entries(kernel, w, count):
    cls = kernel.instance_class
    if hasattr(cls, "value_entries"):
        return cls.value_entries
    value = cls.value

    def separable(kernel, w, count):
        total = 0.0
        for i in range(count):
            total += value(kernel, w[i])
        return total

    return separable
