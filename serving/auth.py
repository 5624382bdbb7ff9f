"""API keys: `Authorization: Bearer <key>`, required whenever the hub listens beyond loopback.

Keys are kept only as SHA-256 digests, each with a name so ops can revoke one without touching
the others. `hub keys new NAME` prints a fresh key and the config line holding its digest.

>>> keys = KeyRing.from_config(cfg.auth, env_keys="ops:s3cret"); keys.check("Bearer s3cret")
'ops'
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from hub.errors import InvalidInput, Unauthorized

OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return "hub_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class KeyRing:
    required: bool
    digests: tuple[tuple[str, str], ...]  # (name, sha256 hex)

    @classmethod
    def from_config(cls, auth, required: bool, env_keys: str = "") -> KeyRing:
        pairs = [(k.name, k.sha256.lower()) for k in auth.keys if not k.revoked]
        for item in filter(None, (s.strip() for s in env_keys.split(","))):
            name, sep, key = item.partition(":")
            if not sep or not key:
                raise InvalidInput("HUB_API_KEYS must be 'name:key,name2:key2'")
            pairs.append((name, digest(key)))
        if required and not pairs:
            raise InvalidInput("the hub listens beyond loopback but no API key is configured "
                               "(auth.keys in the serving config, or HUB_API_KEYS)")
        return cls(required=required, digests=tuple(pairs))

    def check(self, authorization: str | None) -> str | None:
        """Return the key's name, or raise Unauthorized. None when no key is required."""
        if not self.required:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        candidate = digest(token.strip())
        for name, known in self.digests:
            if hmac.compare_digest(candidate, known):
                return name
        raise Unauthorized("invalid or revoked API key")
