"""Errors the package raises on purpose, so callers can tell them from bugs."""


class FitError(ValueError):
    """The data cannot be fitted: too few points, non-finite or non-positive values, no decrease.

    A fit that ran but did not converge is *not* an error: the result object says so
    (``success=False`` with a ``message``), like scipy.optimize's ``OptimizeResult``.
    """


class ScalingWarning(UserWarning):
    """The category of every warning the callbacks give: a skipped point, a missing metric, a fit or figure that
    failed. Filter them with ``warnings.filterwarnings("ignore", category=ScalingWarning)``."""
