"""The sending side of the command path: an operator's command built, signed, sent, and its reply awaited.

``minegw write|broadcast|alarm ack`` use it; any client of the command topics does the same steps
(docs/mqtt.md#commands): a fresh ``request_id`` and ``issued_at``, the fields of the command, then
``key_id`` and ``sig`` (gateway/signing.py).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from gateway import signing
from gateway.config import MqttConfig
from gateway.contract import (AckCommand, AckReply, BroadcastCommand, BroadcastReply, Command, CommandReply, Topics,
                              WriteCommand)
from gateway.core.model import utcnow
from gateway.mqtt import request

KINDS: dict[str, tuple[type[Command], type[BaseModel]]] = {
    "write": (WriteCommand, CommandReply),
    "broadcast": (BroadcastCommand, BroadcastReply),
    "ack": (AckCommand, AckReply),
}


class CommandRefused(Exception):
    """The command could not be built (bad fields, unusable key) or sent; the message says why."""


@dataclass(frozen=True)
class Answer:
    """A gateway's reply to a command, and which gateway it was (from the reply's topic, which the ACL
    lets only that gateway write)."""

    gateway: str
    reply: BaseModel


class Operator:
    """One operator: a private key file (or none, for sites that accept unsigned commands) and a name.

    The name defaults to the key file's stem (``minegw keys new alice`` writes ``alice.key``).
    """

    def __init__(self, key_file: Path | None, name: str | None):
        self.key = None
        if key_file is not None:
            try:
                self.key = signing.load_private_key(key_file)
            except signing.KeyFileError as exc:
                raise CommandRefused(str(exc)) from None
        self.name = name or (Path(key_file).stem if key_file is not None else None)
        if not self.name:
            raise CommandRefused("say who sends the command: --key FILE (or $MINEGW_KEY), or --by NAME")

    def build(self, kind: str, request_id: str | None = None, **fields) -> tuple[str, bytes]:
        """The request id (a new one unless given) and the signed (or, without a key, unsigned) command
        as it goes on the wire."""
        model, _ = KINDS[kind]
        body = {"request_id": request_id or uuid.uuid4().hex,
                "issued_at": utcnow().isoformat().replace("+00:00", "Z"),
                **{k: v for k, v in fields.items() if v is not None}}
        if self.key is not None:
            body = signing.sign(body, self.key, self.name)
        else:
            body["by"] = self.name
        try:
            model.model_validate(body)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise CommandRefused(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}") from None
        return body["request_id"], json.dumps(body, ensure_ascii=False).encode()

    def send(self, cfg: MqttConfig, topics: Topics, kind: str, timeout: float, max_age: float,
             request_id: str | None = None, gateway: str | None = None, **fields) -> BaseModel | None:
        """Send one command and wait for the reply (None: no reply within ``timeout``): :meth:`ask`'s."""
        answer = self.ask(cfg, topics, kind, timeout, max_age, request_id, gateway, **fields)
        return None if answer is None else answer.reply

    def ask(self, cfg: MqttConfig, topics: Topics, kind: str, timeout: float, max_age: float,
            request_id: str | None = None, gateway: str | None = None, **fields) -> Answer | None:
        """Send one command and wait for ``gateway``'s reply (given None: the first gateway's to answer); None:
        no reply within ``timeout``. Replies come under the answering gateway's own topics, which no other
        gateway may write: waiting on one gateway's, an answer forged by another never arrives."""
        topic = {"write": topics.command_write, "broadcast": topics.command_broadcast,
                 "ack": topics.alarm_ack}[kind]()
        request_id, payload = self.build(kind, request_id, **fields)
        # signed: the gateway answers under our name (our MQTT user), the only place we may read replies
        reply_topic = topics.command_reply(gateway or "+", request_id, self.name if self.key is not None else None)
        got = request(cfg, topic, payload, reply_topic, timeout, expiry=max_age)
        if got is None:
            return None
        answered_by = got[0].removeprefix(f"{topics.prefix}/{topics.site}/gateway/").split("/", 1)[0]
        return Answer(answered_by, KINDS[kind][1].model_validate_json(got[1]))
