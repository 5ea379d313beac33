"""Command signatures (gateway/signing.py): the test vectors of docs/mqtt.md#signed-commands, so that a
second implementation can check itself, and ``minegw keys new``."""
import base64
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from gateway import signing
from gateway.cli import app
from gateway.config import CommandsConfig

# RFC 8032, 7.1, TEST 1: the private key (seed) and its public key
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
PUBLIC = "ed25519 11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
VECTORS = [  # (command as sent, canonical bytes signed, sig)
    ({"request_id": "vec-1", "issued_at": "2026-01-02T03:04:05.678Z", "device": "belt-main-1",
      "signal": "run_command", "value": False, "reason": "检修 belt 1", "key_id": "alice"},
     '{"device":"belt-main-1","issued_at":"2026-01-02T03:04:05.678Z","key_id":"alice","reason":"检修 belt 1",'
     '"request_id":"vec-1","signal":"run_command","value":false}',
     "+wGflvcd4TrPiouusB00pKpo7gHxsLkxN0BXEcTuQFZ4uXHRuS3AdanancntrP96ho+Fzb6XK7UoxNCkxm2IBQ=="),
    ({"value": 2.50, "signal": "speed_setpoint", "request_id": "vec-2", "key_id": "alice",
      "issued_at": "2026-01-02T03:04:05Z", "device": "belt-main-1"},
     '{"device":"belt-main-1","issued_at":"2026-01-02T03:04:05Z","key_id":"alice","request_id":"vec-2",'
     '"signal":"speed_setpoint","value":2.5}',
     "bmZ25nDH8RNw7roaeHwnIHTORFWuFaCyKfNPzWhnVgsr0H3mkEUlIkpNrQzrlwzALsq7q53dTC64kxwErPpbBA=="),
]


@pytest.mark.parametrize("command, canonical, sig", VECTORS)
def test_vectors(command, canonical, sig):
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    assert signing.public_text(key) == PUBLIC
    assert signing.canonical(command).decode() == canonical
    signed = signing.sign(command, key, "alice")
    assert signed["sig"] == sig  # Ed25519 is deterministic
    operators = {"alice": signing.parse_public_key(PUBLIC)}
    wire = json.loads(json.dumps(signed, indent=2))  # whitespace and key order on the wire do not matter
    assert signing.verify(wire, operators) == "alice"


def test_what_the_signature_covers():
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    operators = {"alice": key.public_key()}
    signed = signing.sign(VECTORS[0][0], key, "alice")
    for change in ({"value": True}, {"key_id": "bob"}, {"issued_at": "2026-01-02T03:04:06.678Z"}, {"extra": 1}):
        with pytest.raises(signing.SignatureError):
            signing.verify({**signed, **change}, {**operators, "bob": key.public_key()})
    with pytest.raises(signing.SignatureError, match="not base64"):
        signing.verify({**signed, "sig": "***"}, operators)
    with pytest.raises(signing.SignatureError, match="cannot be canonicalised"):
        signing.verify({**signed, "value": 2 ** 60}, operators)  # beyond what JSON numbers hold exactly


def test_public_keys_in_the_site_file(tmp_path):
    from cryptography.hazmat.primitives import serialization

    key = signing.new_private_key()
    pem = tmp_path / "bob.pub"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    cfg = CommandsConfig(operators={"alice": PUBLIC, "bob": str(pem)})
    assert set(cfg.public_keys()) == {"alice", "bob"}
    short = "ed25519 " + base64.b64encode(b"x" * 31).decode()
    for bad, why in ((short, "32 bytes, this one 31"), ("ed25519 ***", "not base64"),
                     ("rsa AAAA", "neither 'ed25519 BASE64' nor the path")):
        with pytest.raises(ValueError, match=why):
            CommandsConfig(operators={"carol": bad})


def test_keys_new_writes_a_private_key_and_prints_the_site_line(tmp_path):
    result = CliRunner().invoke(app, ["keys", "new", "zhang.wei", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = tmp_path / "zhang.wei.key"
    assert os.stat(path).st_mode & 0o777 == 0o600
    key = signing.load_private_key(path)
    line = next(ln for ln in result.output.splitlines() if ln.strip().startswith("zhang.wei:"))
    assert json.loads(line.split(":", 1)[1]) == signing.public_text(key)
    again = CliRunner().invoke(app, ["keys", "new", "zhang.wei", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "exists" in again.output
    assert signing.load_private_key(path).private_bytes_raw() == key.private_bytes_raw()  # not overwritten
    (tmp_path / "rsa.key").write_text("-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n")
    with pytest.raises(signing.KeyFileError, match="rsa.key: not an unencrypted PKCS#8 PEM"):
        signing.load_private_key(tmp_path / "rsa.key")
