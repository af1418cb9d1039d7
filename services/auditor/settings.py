from __future__ import annotations

from pathlib import Path
from typing import Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import PrivateAttr, model_validator

from services.auditor.checkpoints import load_signing_key
from services.common.errors import ConfigurationError
from services.common.settings import ServiceSettings


class AuditorSettings(ServiceSettings):
    # Routing decisions sealed onto the chain in one transaction.
    max_batch: int = 500
    # The Ed25519 private key that signs the trail's head (PKCS#8 PEM, unencrypted, mode 0600; `rctc audit
    # keygen`). Only the auditor holds it: a file mounted for this process (RCTC_SIGNING_KEY_FILE), never an
    # environment value, a topic or the command line. Its public key goes in the registry (audit.public_keys).
    signing_key_file: Path
    # "<seq>:<hash>" of a head the auditor did not sign, to continue from it anyway after an operator has
    # looked at it (README, Security model). Used only when the head is exactly that one.
    accept_unsigned_head: str | None = None
    _signing_key: Ed25519PrivateKey | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _load_key(self) -> Self:
        # Read once, here at the edge: a missing or wrong key stops the start with the file's name.
        try:
            self._signing_key = load_signing_key(self.signing_key_file)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        assert self._signing_key is not None  # set by the validator
        return self._signing_key
