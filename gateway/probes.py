"""Field-engineer probes behind ``minegw modbus read`` and ``minegw mqtt tail``."""
from __future__ import annotations

import json

from paho.mqtt.client import topic_matches_sub as paho_matches
from pydantic import ValidationError
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from rich.console import Console
from rich.table import Table as RichTable

from adapters.modbus import codec
from adapters.modbus.codec import DataType, Order
from adapters.modbus.plan import MAX_BITS, MAX_REGISTERS
from adapters.modbus.profile import Table
from gateway.config import MqttConfig
from gateway.contract import CompactDataMessage, SchemaMessage
from gateway.core.errors import UserError

EXCEPTION_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value",
                   4: "device failure", 5: "acknowledge", 6: "device busy",
                   10: "gateway path unavailable", 11: "gateway target failed to respond"}


async def _read_raw(client: AsyncModbusTcpClient, table: Table, address: int, count: int, unit: int):
    read = {Table.COIL: client.read_coils, Table.DISCRETE_INPUT: client.read_discrete_inputs,
            Table.HOLDING_REGISTER: client.read_holding_registers,
            Table.INPUT_REGISTER: client.read_input_registers}[table]
    rr = await read(address, count=count, device_id=unit)
    if rr.isError():
        code = getattr(rr, "exception_code", 0)
        raise UserError(f"device refused: exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')}) "
                        f"reading {table.value} {address}+{count} from unit {unit}")
    return rr.bits[:count] if table.is_bit else rr.registers


async def modbus_read(console: Console, host: str, port: int, unit: int, table: Table, address: int,
                      count: int, dtype: DataType, order: Order, length: int, timeout: float) -> None:
    if table.is_bit:
        dtype = DataType.BOOL
    if dtype is DataType.STRING and length == 0:
        raise UserError("--type string needs --length (characters)")
    if timeout <= 0:
        raise UserError(f"--timeout {timeout:g}: must be more than 0 s")
    width = 1 if table.is_bit else codec.register_count(dtype, length)
    _check_budget(table, dtype, count, width, length)
    client = AsyncModbusTcpClient(host, port=port, timeout=timeout, retries=0, reconnect_delay=0)
    try:
        if not await client.connect():
            raise UserError(f"cannot connect to {host}:{port} (refused or unreachable)")
        raw = await _read_raw(client, table, address, count * width, unit)
    except ModbusException as exc:
        raise UserError(f"{host}:{port}: no answer from unit {unit} within {timeout:g} s ({exc})") from None
    finally:
        client.close()
    view = RichTable(title=f"{host}:{port} unit {unit} {table.value}")
    for col in ("address", "raw", f"{dtype.value} {order.value if width > 1 else ''}".strip()):
        view.add_column(col)
    for i in range(count):
        words = raw[i * width:(i + 1) * width]
        try:
            value = codec.decode(list(words), dtype, order) if not table.is_bit else bool(words[0])
        except codec.DecodeError as exc:
            value = f"undecodable: {exc}"
        hex_words = " ".join(f"{w:04X}" for w in words) if not table.is_bit else str(int(words[0]))
        view.add_row(str(address + i * width), hex_words, repr(value))
    console.print(view)


def _check_budget(table: Table, dtype: DataType, count: int, width: int, length: int) -> None:
    """One request reads at most 125 registers or 2000 bits (the Modbus limit): say what fits."""
    budget, unit = (MAX_BITS, "bits") if table.is_bit else (MAX_REGISTERS, "registers")
    if count * width <= budget:
        return
    if width > budget:
        raise UserError(f"--length {length}: {width} {unit}; one read takes at most {budget} ({budget * 2} characters)")
    raise UserError(f"--count {count} of {dtype.value} is {count * width} {unit}; one read takes at most {budget}: "
                    f"the largest --count for {dtype.value} is {budget // width}")


class CompactReader:
    """Turns compact data messages back into full ones, from the retained schema messages seen so far."""

    def __init__(self):
        self.schemas: dict[str, SchemaMessage] = {}  # device topic ({prefix}/{site}/{area}/{device}) -> its schemas

    def read(self, topic: str, payload: bytes) -> str:
        """The text to print for one message (a schema message is also kept for the data messages after it)."""
        base, _, leaf = topic.rpartition("/")
        try:
            message = json.loads(payload)
        except ValueError:
            return payload.decode("utf-8", "replace")
        if leaf == "schema" and isinstance(message, dict) and "schemas" in message:
            try:
                self.schemas[base] = SchemaMessage.model_validate(message)
            except ValidationError as exc:
                return f"{json.dumps(message, ensure_ascii=False)}  (not a schema message: {exc.errors()[0]['msg']})"
        elif leaf == "data" and isinstance(message, dict) and "schema" in message:
            return self._expand(base, message)
        return json.dumps(message, ensure_ascii=False)

    def _expand(self, base: str, message: dict) -> str:
        raw = json.dumps(message, ensure_ascii=False)
        try:
            compact = CompactDataMessage.model_validate(message)
        except ValidationError as exc:
            return f"{raw}  (not a compact data message: {exc.errors()[0]['msg']})"
        schema = self.schemas.get(base)
        if schema is None or compact.version not in schema.schemas:
            return f"{raw}  (compact, schema {compact.version} not seen yet on {base}/schema)"
        full = json.loads(compact.expand(schema).model_dump_json())
        full["samples"] = {name: s["value"] if s["quality"] == "good" else s for name, s in full["samples"].items()}
        return f"{json.dumps(full, ensure_ascii=False)}  (compact, schema {compact.version})"


def schema_filter(topic: str) -> str | None:
    """The schema topics a data topic filter needs (``…/data`` → ``…/schema``); None when it covers them."""
    return topic[:-len("data")] + "schema" if topic.endswith("/data") else None


def mqtt_tail(console: Console, cfg: MqttConfig, topic: str, count: int | None, timeout: float | None) -> None:
    """Print messages on ``topic``; compact data messages expanded with the signal names of their device's
    retained schema message (subscribed to as well, printed only when ``topic`` covers it)."""
    from gateway.mqtt import MqttError, tail

    reader = CompactReader()
    extra = schema_filter(topic)

    def show(message) -> bool:
        text = reader.read(message.topic, message.payload)
        if not paho_matches(topic, message.topic):
            return False  # a schema message only ``extra`` asked for: kept, neither printed nor counted
        flag = " (retained)" if message.retain else ""
        console.print(f"[cyan]{message.topic}[/]{flag} {text}", highlight=False, soft_wrap=True)
        return True

    try:
        tail(cfg, [topic, extra] if extra else topic, count=count, timeout=timeout, on_message=show)
    except MqttError as exc:
        raise UserError(str(exc)) from None
