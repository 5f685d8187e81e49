"""Configuration: environment variables, overridden by ``%job config`` and client arguments."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ._exceptions import ConfigError
from ._serde import DEFAULT_OUTPUT_LIMIT

DEFAULT_MAX_BODY_BYTES = 1024 * 1024

#: URL schemes of the PostgreSQL team store (SPEC §10); anything else is a directory.
STORE_URL_SCHEMES = ("postgresql://", "postgres://")


def is_store_url(location: str) -> bool:
    """Whether ``location`` names a PostgreSQL store rather than a directory."""
    return location.lower().startswith(STORE_URL_SCHEMES)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (in the user part and in a ``password=``
    query parameter): what messages, logs and ``%job config`` show."""
    masked = re.sub(r"^([a-zA-Z]+://[^:@/?#]*):[^@/?#]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", masked, flags=re.IGNORECASE)


@dataclass(frozen=True)
class Config:
    """Where the store lives and how the receiver listens (SPEC §1).

    ``store`` (a ``postgresql://`` URL) puts the records in PostgreSQL instead of ``dir``.
    """

    dir: str = ".trigger_nb"
    store: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    public_url: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    #: Seconds a run's execution lease lasts unless renewed (SPEC §10): how long a run whose
    #: process was stopped, or died where its death cannot be seen, waits to be taken over.
    lease_ttl: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
        """Read ``TRIGGER_NB_DIR/STORE/HOST/PORT/PUBLIC_URL``; non-None ``overrides`` win.

        ``TRIGGER_NB_STORE`` wins over ``TRIGGER_NB_DIR``; an explicit ``dir`` override (without
        ``store``) means that directory, whatever ``TRIGGER_NB_STORE`` says.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "dir": env.get("TRIGGER_NB_DIR") or ".trigger_nb",
            "store": env.get("TRIGGER_NB_STORE") or None,
            "host": env.get("TRIGGER_NB_HOST") or "127.0.0.1",
            "port": env.get("TRIGGER_NB_PORT") or 0,
            "public_url": env.get("TRIGGER_NB_PUBLIC_URL") or None,
            "lease_ttl": env.get("TRIGGER_NB_LEASE_TTL") or 60.0,
        }
        if overrides.get("dir") is not None and overrides.get("store") is None:
            values["store"] = None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()

    @property
    def location(self) -> str:
        """Where the records are, for messages: the store URL (password masked) or the directory."""
        return mask_url(self.store) if self.store else self.dir

    def validated(self) -> Config:
        directory = self.dir
        if isinstance(directory, os.PathLike):
            directory = os.fspath(directory)
        if not isinstance(directory, str) or not directory or "\0" in directory:
            raise ConfigError(
                f"The store directory (dir=, TRIGGER_NB_DIR) must be a path: a non-empty string "
                f"or os.PathLike, got {self.dir!r}."
            )
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"TRIGGER_NB_HOST must be a host name or address, got {self.host!r}.")
        try:
            port = int(self.port)
        except (TypeError, ValueError):
            raise ConfigError(f"TRIGGER_NB_PORT must be an integer 0-65535, got {self.port!r}.") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"TRIGGER_NB_PORT must be between 0 and 65535, got {port}.")
        if self.public_url is not None and not str(self.public_url).startswith(("http://", "https://")):
            raise ConfigError(
                f"TRIGGER_NB_PUBLIC_URL must start with http:// or https://, got {self.public_url!r}."
            )
        if self.store is not None and not is_store_url(str(self.store)):
            raise ConfigError(
                f"TRIGGER_NB_STORE / --store must be a postgresql:// URL, got {mask_url(str(self.store))!r}. "
                "For a store directory use TRIGGER_NB_DIR / --dir instead."
            )
        for name in ("max_body_bytes", "output_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of bytes, got {value!r}.")
        try:
            lease_ttl = float(self.lease_ttl)
        except (TypeError, ValueError):
            lease_ttl = math.nan
        if not 1.0 <= lease_ttl <= 86400.0:  # also false for NaN
            raise ConfigError(
                f"TRIGGER_NB_LEASE_TTL must be a number of seconds from 1 to 86400, got {self.lease_ttl!r}."
            )
        return replace(
            self,
            lease_ttl=lease_ttl,
            dir=os.path.abspath(os.path.expanduser(directory)),
            port=port,
            public_url=self.public_url.rstrip("/") if self.public_url else None,
        )
