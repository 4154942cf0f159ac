"""Errors the command line reports in one line, without a traceback."""


class GrpoError(Exception):
    """Base of the errors a user can act on."""


class NonFiniteError(GrpoError, RuntimeError):
    """Too many non-finite updates in a row; the last good checkpoint is kept."""


class MissingDependency(GrpoError, ImportError):
    """An optional package (vLLM, DeepSpeed) was asked for but is not installed; says how to install it."""
