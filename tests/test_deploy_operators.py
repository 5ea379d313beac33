"""Issue 22, findings 6 and 8: replies only from the right gateway, operators with client certificates.

Against real Mosquitto running the shipped deploy/ files (fixtures of test_deploy): a gateway
cannot answer under another gateway's reply topic; an operator with a client certificate signed
by the mine's CA logs in on the surface's 8884 listener without a password, sends a command and
reads its own replies only; a certificate from another CA, or none, is refused at the handshake.
A revoked certificate (the CRL) is refused too. On a plain broker (where anyone may publish
anything), the requester still takes only the named gateway's answer.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pydantic import ValidationError

from gateway.config import MqttConfig
from gateway.contract import Topics
from gateway.mqtt import MqttError, make_client, tail
from gateway.operator import Operator
from tests.test_deploy import (GW_1201, GW_1203, OPERATOR, REPO, UNDERGROUND, Certs, Client,  # noqa: F401
                               ShippedBroker, certs, district, surface_conf)
from tests.util import Operators

TOPICS = Topics("minegw", "demo-mine")
COMMAND = {"device": "shearer-1201", "signal": "haulage_speed_setpoint", "value": 2.5}


@dataclass(frozen=True)
class OperatorCerts:
    li_na: tuple[Path, Path]  # certificate, key: CN=li.na, signed by the mine's CA
    outsider: tuple[Path, Path]  # CN=li.na too, signed by another CA


def issue(d: Path, name: str, cn: str, ca: Path) -> tuple[Path, Path]:
    """A client certificate as docs/deploy.md "Operators' certificates" issues one (openssl)."""
    openssl = shutil.which("openssl") or pytest.skip("openssl is not installed")

    def run(*args) -> None:
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)

    key, csr, crt, ext = (d / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
        "-out", csr, "-subj", f"/CN={cn}")
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca.with_suffix(".key"), "-CAcreateserial", "-days", "2",
        "-out", crt, "-extfile", ext)
    return crt, key


@pytest.fixture(scope="module")
def operator_certs(certs, tmp_path_factory) -> OperatorCerts:  # noqa: F811
    d = tmp_path_factory.mktemp("operator-certs")
    return OperatorCerts(issue(d, "li.na", "li.na", certs.ca), issue(d, "outsider", "li.na", certs.wrong_ca))


def cert_login(port: int, certs: Certs, cert: tuple[Path, Path] | None) -> MqttConfig:  # noqa: F811
    """The operator's ``mqtt:`` section for the certificate listener: no user, no password."""
    tls = {"ca_file": certs.ca} | ({"cert_file": cert[0], "key_file": cert[1]} if cert else {})
    return MqttConfig(host="127.0.0.1", port=port, tls=tls)


def answer(gateway: Client, topics: Topics, answers: list[tuple[str, dict]], count: int = 1) -> list[dict]:
    """As a gateway: wait for the ``count``-th write command and publish each answer to it (a topic with
    "{rid}" for its request id, the reply's fields); every command so far, with its MQTT 5 response topic."""
    topic = topics.command_write()
    gateway.wait_for(lambda: len(gateway.on(topic)) >= count)
    with gateway._cond:
        messages = [m for m in gateway.messages if m.topic == topic]
    command = json.loads(messages[-1].payload)
    for reply_topic, fields in answers:
        reply = {"request_id": command["request_id"], "by": command["key_id"], **fields}
        assert gateway.publish(reply_topic.format(rid=command["request_id"]), json.dumps(reply).encode()) in (
            "Success", "No matching subscribers")
    return [{**json.loads(m.payload), "response_topic": getattr(m.properties, "ResponseTopic", None)}
            for m in messages]


def test_a_gateway_cannot_answer_for_another(district):  # noqa: F811
    peer = Client(district.underground.port, GW_1203)
    try:
        assert peer.publish(TOPICS.command_reply("gw-1201", "r-1", OPERATOR), b"{}") == "Not authorized"  # 0x87
        assert peer.publish(TOPICS.command_reply("gw-1203", "r-1", OPERATOR), b"{}") == "Success"
    finally:
        peer.close()


def test_an_operator_with_a_client_certificate(district, certs, operator_certs, tmp_path):  # noqa: F811
    """li.na's certificate is its login (no password): it sends a command, reads its own reply, and not
    zhang.wei's, though it subscribes to everything."""
    watch = Client(district.surface.cert_port, "li.na", subscribe=("minegw/#",), tls_ca=certs.ca,
                   cert=operator_certs.li_na)
    gateway = Client(district.underground.port, GW_1201, subscribe=(TOPICS.command_write(),))
    operator = Operator(Operators(tmp_path, "li.na").files["li.na"], "li.na")
    cfg = cert_login(district.surface.cert_port, certs, operator_certs.li_na)
    try:
        with ThreadPoolExecutor(1) as pool:
            asked = pool.submit(operator.ask, cfg, TOPICS, "write", 15.0, 30.0, gateway="gw-1201", **COMMAND)
            answer(gateway, TOPICS, [(TOPICS.command_reply("gw-1201", "{rid}", OPERATOR), {"ok": False}),
                                     (TOPICS.command_reply("gw-1201", "{rid}", "li.na"), {"ok": True})])
            got = asked.result(20)
        assert got is not None and got.gateway == "gw-1201" and got.reply.ok
        mine = TOPICS.command_reply("gw-1201", got.reply.request_id, "li.na")
        watch.wait_for(lambda: watch.on(mine))
        marker = "minegw/demo-mine/face-1201/shearer-1201/state"
        assert gateway.publish(marker, b"{}") == "Success"
        watch.wait_for(lambda: watch.on(marker))  # later than zhang.wei's reply would have come
        assert [m.topic for m in watch.messages if "/reply/" in m.topic] == [mine]
    finally:
        watch.close()
        gateway.close()


def test_minegw_write_with_a_client_certificate_takes_its_gateways_answer(district, certs, operator_certs,  # noqa: F811
                                                                          tmp_path):
    """The CLI from an operator's site file (the shipped site.yaml, its mqtt: the 8884 listener and li.na's
    certificate): gw-1203 answers first (not its device), the CLI waits for gw-1201, the site file's gateway."""
    site = yaml.safe_load((UNDERGROUND / "site.yaml").read_text())
    crt, key = operator_certs.li_na
    site["mqtt"] = {"host": "127.0.0.1", "port": district.surface.cert_port,
                    "tls": {"ca_file": str(certs.ca), "cert_file": str(crt), "key_file": str(key)}}
    del site["historian"]
    path = tmp_path / "li.na-site.yaml"
    path.write_text(yaml.safe_dump(site))
    signing_key = Operators(tmp_path, "li.na").files["li.na"]
    gateways = {gw: Client(district.underground.port, f"demo-mine.{gw}", subscribe=(TOPICS.command_write(),))
                for gw in ("gw-1201", "gw-1203")}
    cli = [sys.executable, "-m", "gateway.cli", "write", "shearer-1201", "haulage_speed_setpoint", "2.5",
           "--key", str(signing_key), "-c", str(path), "--timeout", "15"]
    try:
        with ThreadPoolExecutor(1) as pool:
            run = pool.submit(subprocess.run, cli, capture_output=True, text=True, timeout=60, cwd=REPO)
            answer(gateways["gw-1203"], TOPICS, [(TOPICS.command_reply("gw-1203", "{rid}", "li.na"),
                                                  {"ok": False, "error": "unknown device 'shearer-1201'"})])
            answer(gateways["gw-1201"], TOPICS, [(TOPICS.command_reply("gw-1201", "{rid}", "li.na"), {"ok": True})])
            done = run.result(60)
    finally:
        for client in gateways.values():
            client.close()
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0 and text.startswith("ok: shearer-1201.haulage_speed_setpoint=2.5 (") and (
        text.endswith(", gateway gw-1201)")), text


def test_the_certificate_listener_refuses_other_cas_and_no_certificate(district, certs, operator_certs):  # noqa: F811
    port = district.surface.cert_port
    for cert in (operator_certs.outsider, None):
        with pytest.raises(MqttError):
            tail(cert_login(port, certs, cert), "minegw/#", 1, 5.0, lambda message: None)
    password_only = cert_login(port, certs, None).model_copy(update={"username": OPERATOR})
    with pytest.raises(MqttError):  # a password does not open this listener either
        tail(password_only, "minegw/#", 1, 5.0, lambda message: None)


def test_the_requester_takes_only_the_named_gateways_answer(mosquitto, tmp_path):
    """A broker without ACLs: gw-1203 answers first, falsely; asked for gw-1201, the operator waits for
    gw-1201's answer; asked for any gateway, it takes the first and says which gateway that was."""
    prefix = "forge-test"
    topics = Topics(prefix, "s1")
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port)
    operator = Operator(Operators(tmp_path, "li.na").files["li.na"], "li.na")
    gateway = Client(mosquitto.port, None, subscribe=(topics.command_write(),))
    forged = (topics.command_reply("gw-1203", "{rid}", "li.na"), {"ok": True, "error": "forged"})
    genuine = (topics.command_reply("gw-1201", "{rid}", "li.na"), {"ok": False, "error": "out of range"})
    try:
        with ThreadPoolExecutor(1) as pool:
            named = pool.submit(operator.ask, cfg, topics, "write", 10.0, 30.0, gateway="gw-1201", **COMMAND)
            answer(gateway, topics, [forged, genuine])
            got = named.result(15)
            assert (got.gateway, got.reply.error) == ("gw-1201", "out of range")
            first = pool.submit(operator.ask, cfg, topics, "write", 10.0, 30.0, **COMMAND)
            commands = answer(gateway, topics, [forged, genuine], count=2)
            got = first.result(15)
            assert (got.gateway, got.reply.error) == ("gw-1203", "forged")
    finally:
        gateway.close()
    # MQTT 5: the named gateway's reply topic as the response topic; for any gateway, none (no wildcards there)
    assert [c["response_topic"] for c in commands] == [
        topics.command_reply("gw-1201", commands[0]["request_id"], "li.na"), None]


def test_a_client_certificate_that_cannot_be_used_is_one_clear_error(certs, operator_certs, tmp_path):  # noqa: F811
    with pytest.raises(ValidationError, match="key_file without cert_file"):
        MqttConfig.model_validate({"tls": {"ca_file": str(certs.ca), "key_file": str(operator_certs.li_na[1])}})
    crt, key = operator_certs.li_na
    for cert in ((tmp_path / "missing.crt", key), (crt, operator_certs.outsider[1])):  # no file; another's key
        with pytest.raises(MqttError, match="mqtt.tls: cannot load the CA, certificate or key"):
            make_client(cert_login(1, certs, cert), "minegw-test")


def revocation_list(certs: Certs, revoked: Path, path: Path) -> Path:  # noqa: F811
    """The CRL ``openssl ca -gencrl`` would make after ``openssl ca -revoke``: ``revoked``'s serial, signed by the CA."""
    ca_cert = x509.load_pem_x509_certificate(certs.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(certs.ca.with_suffix(".key").read_bytes(), None)
    serial = x509.load_pem_x509_certificate(revoked.read_bytes()).serial_number
    now = datetime.now(timezone.utc)
    entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject).last_update(now)
           .next_update(now + timedelta(days=1)).add_revoked_certificate(entry).sign(ca_key, hashes.SHA256()))
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_revoked_operator_certificate_is_refused(certs, operator_certs, tmp_path):  # noqa: F811
    """docs/deploy.md, "Operators' certificates": the shipped ``crlfile`` line uncommented, the CRL naming
    li.na's certificate; zhang.wei's, from the same CA, still logs in."""
    (tmp_path / "surface").mkdir()
    crl = revocation_list(certs, operator_certs.li_na[0], tmp_path / "mine-ca.crl")
    zhang_wei = issue(tmp_path, "zhang.wei", "zhang.wei", certs.ca)
    shipped = surface_conf(certs)

    def conf(b: ShippedBroker) -> str:
        text = shipped(b)
        assert "\n#crlfile /etc/mosquitto/certs/mine-ca.crl\n" in text, "the shipped file's crlfile line"
        return text.replace("\n#crlfile /etc/mosquitto/certs/mine-ca.crl\n", f"\ncrlfile {crl}\n")

    broker = ShippedBroker(tmp_path / "surface", conf)
    broker.start()
    try:
        with pytest.raises(MqttError):
            tail(cert_login(broker.cert_port, certs, operator_certs.li_na), "minegw/#", 1, 5.0, lambda m: None)
        assert tail(cert_login(broker.cert_port, certs, zhang_wei), "minegw/#", 1, 1.0, lambda m: None) == 0
    finally:
        broker.stop()
