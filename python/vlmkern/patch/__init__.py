"""The patch layer: ``vlmkern.apply(model, ...)`` (being written)."""

SUPPORTED_FAMILIES = ()


def apply(model, **kwargs):
    raise NotImplementedError("vlmkern.apply: work in progress")
