"""Typed reading of TOML tables for :mod:`ccwatch.config`: every error names its dotted key.

A :class:`Table` remembers which keys were read, so :meth:`Table.finish` can report the rest as
unknown (a misspelt key must never be silently ignored).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ccwatch.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6,
    "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20,
    "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40,
}


def show(value: Any) -> str:
    """A value as the TOML user wrote it, for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return str(value)


def parse_size(value: Any, *, key: str) -> int:
    """Bytes from an integer or a string such as ``"10 MB"``, ``"1.5 GiB"``, ``"500k"``."""
    expected = 'a size in bytes or a string such as "10 MB" or "1.5 GiB"'
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        unit = _SIZE_UNITS.get(match.group(2).lower())
        if unit is None:
            raise ConfigError(key, f"unknown size unit in {show(value)} (use B, kB, MB, GB, TB, "
                              f"KiB, MiB, GiB, TiB)")
        size = int(float(match.group(1)) * unit)
    else:
        raise ConfigError(key, f"must be {expected}, got {show(value)}")
    if size < 1:
        raise ConfigError(key, f"must be at least 1 byte, got {show(value)}")
    return size


def join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def split_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[::1]:port"`` → (host, port); ValueError if malformed."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected host:port, got {listen!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def parse_endpoint(value: str, *, key: str, named: bool) -> str:
    """A base URL without trailing "/" (or a named endpoint if ``named``); errors name ``key``."""
    if named and value in ("live", "sandbox", "embedded"):
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        expected = "live, sandbox, embedded or an http(s):// URL" if named else "an http(s):// URL"
        raise ConfigError(key, f"must be {expected}, got {show(value)}")
    if parts.path.rstrip("/").endswith("/v2"):
        raise ConfigError(key, f"give the base URL without /v2, got {show(value)}")
    return value.rstrip("/")


class Table:
    """One TOML table being read, with its dotted key for messages."""

    def __init__(self, data: Mapping[str, Any], key: str) -> None:
        self.data = data
        self.key = key
        self._read: set[str] = set()

    def sub(self, name: str) -> str:
        return join(self.key, name)

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str, default: Any = None) -> Any:
        self._read.add(name)
        return self.data.get(name, default)

    def finish(self) -> None:
        """Raise for the first key nobody read."""
        for name in self.data:
            if name not in self._read:
                close = difflib.get_close_matches(name, sorted(self._read), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(self.sub(name), f"unknown key{hint}")

    def expect(self, name: str) -> None:
        """Declare a key known (read elsewhere), so :meth:`finish` leaves it alone."""
        self._read.add(name)

    def string(self, name: str, default: str) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str):
            raise ConfigError(self.sub(name), f"must be a string, got {show(value)}")
        return value

    def required_string(self, name: str) -> str:
        if name not in self.data:
            raise ConfigError(self.sub(name), "is required")
        value = self.string(name, "")
        if not value.strip():
            raise ConfigError(self.sub(name), "must not be empty")
        return value

    def choice(self, name: str, default: str, choices: Iterable[str]) -> str:
        value = self.string(name, default)
        options = tuple(choices)
        if value not in options:
            allowed = " | ".join(f'"{c}"' for c in options)
            raise ConfigError(self.sub(name), f"must be one of {allowed}, got {show(value)}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.sub(name), f"must be true or false, got {show(value)}")
        return value

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        value = self.raw(name, default)
        # bool is an int in Python, never in a config file.
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(self.sub(name),
                              f"must be an integer >= {minimum}, got {show(value)}")
        return value

    def duration(self, name: str, default: float, *, allow_zero: bool = False) -> float:
        value = self.raw(name, default)
        # TOML has inf and nan; neither is a duration anyone means.
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (value >= 0 if allow_zero else value > 0):
            bound = ">= 0" if allow_zero else "> 0"
            raise ConfigError(self.sub(name),
                              f"must be a number of seconds {bound}, got {show(value)}")
        return float(value)

    def size(self, name: str, default: int) -> int:
        return parse_size(self.raw(name, default), key=self.sub(name))

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw(name, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(self.sub(name),
                              f'must be a list of non-empty strings such as ["*.pdf"], '
                              f"got {show(value)}")
        return tuple(value)

    def path(self, name: str, base_dir: Path, *, required: bool) -> tuple[Path | None, bool]:
        """An absolute path and whether the TOML gave it as a relative one; "" means none."""
        text = self.required_string(name) if required else self.string(name, "")
        if not text:
            return None, False
        given = Path(text).expanduser()
        relative = not given.is_absolute()
        return Path(os.path.normpath(base_dir / given)), relative

    def table(self, name: str) -> Table | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ConfigError(self.sub(name), f"must be a table, got {show(value)}")
        return Table(value, self.sub(name))

    def tables(self, name: str) -> list[Table]:
        """An array of tables (``[[name]]``), keyed ``name[i]``."""
        value = self.raw(name, [])
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise ConfigError(self.sub(name), f"must be an array of tables ([[{name}]]), "
                              f"got {show(value)}")
        return [Table(item, f"{self.sub(name)}[{i}]") for i, item in enumerate(value)]


_JWT = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


def looks_like_secret(value: str) -> bool:
    """A value shaped like a key rather than a variable name or a path: JWT-like (CloudConvert
    keys: ``eyJ…``, three dot-separated parts) or a long random token (mixed case and digits)."""
    value = value.strip()
    if value.startswith("eyJ") or _JWT.fullmatch(value):
        return True
    return (len(value) >= 32 and any(c.islower() for c in value)
            and any(c.isupper() for c in value) and any(c.isdigit() for c in value))


def refuse_pasted_secret(value: str, *, key: str, what: str) -> None:
    """ConfigError (never showing ``value``) when a setting meant to *name* where a secret is
    holds the secret itself."""
    if looks_like_secret(value):
        raise ConfigError(key, f"holds what looks like {what} itself (not shown here); this setting "
                          f"names where {what} is kept. Move it there, and replace the key if this "
                          f"file has been shared")


def read_secret(*, env: Mapping[str, str], env_name: str, file: Path | None, credential: str,
                key: str) -> str | None:
    """A secret from the environment, else ``file``, else the systemd credential; None if absent."""
    from_env = env.get(env_name, "").strip() if env_name else ""
    if from_env:
        return from_env
    if file is not None:
        return _read_secret_file(file, key=key, required=True)
    credentials_dir = env.get("CREDENTIALS_DIRECTORY", "")
    if credentials_dir:
        return _read_secret_file(Path(credentials_dir) / credential, key=key, required=False)
    return None


def _read_secret_file(path: Path, *, key: str, required: bool) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        if not required:
            return None
        raise ConfigError(key, f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(key, f"cannot read {path}: {exc}") from exc
    if not text:
        raise ConfigError(key, f"{path} is empty")
    return text
