"""User-facing errors: one clear line, no traceback in the CLI."""

from __future__ import annotations

__all__ = ["AuditlensError", "DatasetError", "PairMismatchError", "SiteError", "StoreError"]


class AuditlensError(Exception):
    """An error caused by the user's input or environment, reported as one line."""


class PairMismatchError(AuditlensError):
    """The base and fine-tuned models are not comparable (tokenizer, layers, width)."""


class SiteError(AuditlensError):
    """An unknown or malformed activation site name."""


class DatasetError(AuditlensError):
    """An empty, malformed or unreadable prompt set."""


class StoreError(AuditlensError):
    """A corrupt, partial or mismatched activation store."""
