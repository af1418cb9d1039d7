"""Fixtures shared by every test. The real broker lives in tests/integration/conftest.py."""

from __future__ import annotations

import pytest

from services.common.codec import Codec


@pytest.fixture(scope="session")
def codec() -> Codec:
    """The codec over the schemas in services/common/schemas/, as every service builds it."""
    return Codec.from_directory()
