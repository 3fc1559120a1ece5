"""Token-reduction methods as score x select x placement (see docs/methods.md).

A method object scores and selects; :mod:`vlmkern.patch` places it in a model.
"""

from vlmkern.methods.fastv import FastV

METHODS = {"fastv": FastV}


def get_method(name: str, **kwargs):
    """The method called ``name`` built with ``kwargs`` (ValueError if unknown)."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}") from None
    return cls(**kwargs)


__all__ = ["FastV", "METHODS", "get_method"]
