"""CURVE key pairs as ZeroMQ certificate files (``NAME.key`` public, ``NAME.key_secret`` secret).

The files use the ZeroMQ certificate layout (ZPL text, as czmq's ``zcert`` and pyzmq's
``zmq.auth`` write and read), so keys made here work with other ZeroMQ tools and the other way
round. The secret file is created with mode 0600 in one step, never readable by others even
briefly.
"""

from __future__ import annotations

import datetime
import logging
import os
import stat
from pathlib import Path

import attrs
import zmq
import zmq.auth

__all__ = ["KeyPair", "load_public_key", "load_secret_key", "write_keypair"]

log = logging.getLogger("tasker.zmq")

_Z85_KEY_LENGTH = 40

_PUBLIC_BANNER = """#   ****  Generated on {now} by tasker events keygen  ****
#   ZeroMQ CURVE Public Certificate
#   Exchange securely, or use a secure mechanism to verify the contents
#   of this file after exchange.

"""
_SECRET_BANNER = """#   ****  Generated on {now} by tasker events keygen  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

"""


@attrs.frozen
class KeyPair:
    """A Z85-encoded CURVE key pair, as the socket options take it."""

    public: bytes
    secret: bytes


def _certificate(banner: str, name: str, public: bytes, secret: bytes | None) -> str:
    lines = [banner.format(now=datetime.datetime.now().isoformat(timespec="seconds"))]
    lines.append("metadata\n")
    lines.append(f'    name = "{name}"\n')
    lines.append("curve\n")
    lines.append(f'    public-key = "{public.decode("ascii")}"\n')
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"\n')
    return "".join(lines)


def write_keypair(directory: Path, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) under ``directory``.

    Refuses (FileExistsError) to replace existing files unless ``force``: overwriting a key
    locks out every peer that trusted it.
    """
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"key name {name!r} must be a plain file name")
    directory.mkdir(parents=True, exist_ok=True)
    public_path = directory / f"{name}.key"
    secret_path = directory / f"{name}.key_secret"
    if not force:
        for path in (public_path, secret_path):
            if path.exists():
                raise FileExistsError(f"{path} already exists (use --force to replace it)")
    public, secret = zmq.curve_keypair()
    _write(secret_path, _certificate(_SECRET_BANNER, name, public, secret), 0o600)
    _write(public_path, _certificate(_PUBLIC_BANNER, name, public, None), 0o644)
    return public_path, secret_path


def _write(path: Path, text: str, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (os.open), replacing any old file."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text)
    os.chmod(path, mode)  # the umask may have narrowed the public file's mode


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read CURVE key file {str(path)!r}: {exc}") from None
    for what, key in (("public", public), ("secret", secret)):
        if key is not None and len(key) != _Z85_KEY_LENGTH:
            raise ValueError(
                f"CURVE key file {str(path)!r}: the {what} key is not a 40-character Z85 key"
            )
    return public, secret


def load_public_key(path: Path) -> bytes:
    """The public key in a certificate file (public or secret one); ValueError if unreadable."""
    return _load(path)[0]


def load_secret_key(path: Path) -> KeyPair:
    """Both keys from a ``.key_secret`` file; warns when others may read it."""
    public, secret = _load(path)
    if secret is None:
        raise ValueError(
            f"CURVE key file {str(path)!r} holds no secret key (name the .key_secret file)"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "CURVE secret key %s is readable by others (mode %04o); chmod 600 it", path, mode
        )
    return KeyPair(public, secret)
