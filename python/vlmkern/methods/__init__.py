"""Token-reduction methods as score x select x placement (see docs/methods.md).

A method object scores and selects; :mod:`vlmkern.patch` places it in a model.
"""

import inspect

from vlmkern.methods.dycoke import DyCoke
from vlmkern.methods.evs import EVS
from vlmkern.methods.fastv import FastV
from vlmkern.methods.fastvid import FastVID
from vlmkern.methods.pixel_dedup import PixelDedup
from vlmkern.methods.vidcom2 import VidCom2

METHODS = {"fastv": FastV, "evs": EVS, "dycoke": DyCoke, "vidcom2": VidCom2, "fastvid": FastVID,
           "pixel_dedup": PixelDedup}


def get_method(name: str, **kwargs):
    """The method called ``name`` built with ``kwargs`` (ValueError if unknown)."""
    try:
        cls = METHODS[name]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}") from None
    accepted = [p for p in inspect.signature(cls).parameters]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; it accepts "
                         f"{', '.join(accepted) or 'none'}")
    return cls(**kwargs)


__all__ = ["DyCoke", "EVS", "FastV", "FastVID", "PixelDedup", "VidCom2", "METHODS", "get_method"]
