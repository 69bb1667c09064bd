"""The one exception family that strata raises on purpose.

Every error strata raises deliberately derives from :class:`StrataError`, so callers can
catch one type. Errors about bad arguments also derive from :class:`ValueError`.
"""

from __future__ import annotations


class StrataError(Exception):
    """Base of every error strata raises on purpose."""


class GGUFError(StrataError):
    """A GGUF file is malformed, truncated or hostile; the message names the field and offset."""


class UnsupportedModelError(StrataError):
    """The file is valid GGUF, but its architecture, tokenizer or a tensor type is not supported."""


class ContextOverflowError(StrataError, ValueError):
    """A prompt (plus what must be generated) does not fit in the model's context (n_ctx)."""


class StrataValueError(StrataError, ValueError):
    """An argument is out of range; the message names the argument."""
