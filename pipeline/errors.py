"""The errors that mean "your input is wrong" (exit code 2), gathered for the CLI."""
from __future__ import annotations

from pipeline.config import ConfigError
from pipeline.sources import ProblemSourceError


def _store_errors() -> tuple[type[Exception], ...]:
    from pipeline.store import ConfigMismatchError

    return (ConfigMismatchError,)


USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, ProblemSourceError, *_store_errors())
