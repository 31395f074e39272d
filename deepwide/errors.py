"""Error classes for mistakes a user can cause.

Every message says what is wrong *and* what to do about it; the CLI prints it on one line
and exits non-zero (a traceback only with ``-v``). Programming errors stay ordinary
exceptions and are never caught into these.
"""

from __future__ import annotations


class DeepwideError(Exception):
    """Base class: a user-caused error with a one-line, actionable message."""

    exit_code: int = 2


class ConfigError(DeepwideError):
    """An invalid option, config file or combination of settings."""


class UnknownNameError(DeepwideError):
    """A registry lookup missed (unknown task, corpus, model, measure …)."""


class AudioError(DeepwideError):
    """Missing, unreadable, empty, non-finite or wrongly sampled audio."""


class CorpusError(DeepwideError):
    """A missing corpus path, malformed split file or inconsistent manifest."""


class ModelError(DeepwideError):
    """An unknown model spec, or a checkpoint whose keys/shapes do not match."""


class StoreError(DeepwideError):
    """A feature store that is missing, incomplete, mismatched or locked by another writer."""


class TaskError(DeepwideError):
    """A probing/analysis task that the given store cannot serve (e.g. missing labels)."""
