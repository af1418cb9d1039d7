"""The auditor's signing key for a test session, as `make run` makes one: a PEM file only the auditor reads,
and its public key for the registries the tests publish (every test's auditor signs one shared trail)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

from services.auditor.checkpoints import new_signing_key
from services.common.registry.model import AuditKey, AuditKeys


@cache
def _made() -> tuple[Path, AuditKey]:
    folder = Path(tempfile.mkdtemp(prefix="rctc-audit-key-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    pem, kid, public = new_signing_key()
    path = folder / "auditor.key"
    path.write_bytes(pem)
    path.chmod(0o600)
    return path, AuditKey(id=kid, ed25519=public)


def signing_key_file() -> Path:
    return _made()[0]


def audit_keys() -> AuditKeys:
    """The registry's `audit` section listing the session's key."""
    return AuditKeys(public_keys=[_made()[1]])
