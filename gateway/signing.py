"""Operator signatures on commands: Ed25519 over the command's RFC 8785 canonical JSON.

The wire format is part of the MQTT contract (docs/mqtt.md#signed-commands): a command object
carries ``key_id`` (the operator's name) and ``sig``, the base64 Ed25519 signature over the UTF-8
bytes of the object without ``sig``, canonicalised by RFC 8785 (JCS: keys sorted by UTF-16 code
units, no insignificant whitespace, numbers as ECMAScript writes them). Private keys are PKCS#8
PEM files; public keys are ``"ed25519 BASE64"`` (the raw 32-byte key) or the path of a PEM file.
"""
from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import rfc8785

# cryptography (~8 MB) is imported by the first key used: a site without commands.operators never loads it.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

SIG = "sig"
KEY_ID = "key_id"
PUBLIC_PREFIX = "ed25519 "


class SignatureError(ValueError):
    """A command whose signature cannot be accepted; the message says why."""


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file."""


def canonical(command: Mapping) -> bytes:
    """The bytes that are signed: the command without ``sig``, RFC 8785 canonical JSON, UTF-8."""
    try:
        return rfc8785.dumps({k: v for k, v in command.items() if k != SIG})
    except rfc8785.CanonicalizationError as exc:  # e.g. an integer beyond 2**53, NaN
        raise SignatureError(f"cannot be canonicalised: {exc}") from None


def sign(command: Mapping, key: Ed25519PrivateKey, key_id: str) -> dict:
    """A copy of ``command`` with ``key_id`` set and ``sig`` added."""
    signed = {k: v for k, v in command.items() if k != SIG}
    signed[KEY_ID] = key_id
    signed[SIG] = base64.b64encode(key.sign(canonical(signed))).decode()
    return signed


def verify(command: Mapping, operators: Mapping[str, Ed25519PublicKey]) -> str:
    """The ``key_id`` of a correctly signed command from a known operator; :class:`SignatureError` otherwise."""
    key_id, sig = command.get(KEY_ID), command.get(SIG)
    if not isinstance(sig, str) or not sig:
        raise SignatureError("unsigned: the command has no sig")
    if not isinstance(key_id, str) or not key_id:
        raise SignatureError("signed without a key_id")
    public = operators.get(key_id)
    if public is None:
        raise SignatureError(f"unknown key_id {key_id[:64]!r}: not in commands.operators")
    try:
        raw = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("sig is not base64") from None
    from cryptography.exceptions import InvalidSignature
    try:
        public.verify(raw, canonical(command))
    except InvalidSignature:
        raise SignatureError(f"bad signature for key_id {key_id!r}") from None
    return key_id


# ---- keys ----

def new_private_key() -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """``"ed25519 BASE64"``: how a public key is written in the site file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PUBLIC_PREFIX + base64.b64encode(raw).decode()


def load_private_key(path: str | os.PathLike) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PKCS#8 PEM file (``minegw keys new`` writes them)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PKCS#8 PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: a {type(key).__name__.removeprefix('_')}, not an Ed25519 key")
    return key


def parse_public_key(text: str) -> Ed25519PublicKey:
    """``"ed25519 BASE64"`` (32 raw bytes) or the path of a PEM public key; ValueError says what is wrong."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    if text.startswith(PUBLIC_PREFIX):
        try:
            raw = base64.b64decode(text[len(PUBLIC_PREFIX):].strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the key after 'ed25519 ' is not base64") from None
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
        return Ed25519PublicKey.from_public_bytes(raw)
    path = Path(text)
    if not path.is_file():
        raise ValueError("neither 'ed25519 BASE64' nor the path of a PEM public key file")
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, TypeError, OSError) as exc:
        raise ValueError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key
