"""Moved to services/common/folding.py: the watchlist and correlation compare subject names folded the same way
as redaction masks them, and the shared library cannot import a service. Kept so that imports of it still read."""

from services.common.folding import View, compact, fold, is_word, refanged

__all__ = ["View", "compact", "fold", "is_word", "refanged"]
