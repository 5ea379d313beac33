"""``minegw console``: the live view of one site, a Textual app over :mod:`gateway.console.model`.

Every ``refresh`` seconds the app drains what the MQTT feed received (on its event loop: paho's thread
only fills the feed's inbox), applies it to the model and redraws the panels. Keys: ``a`` acknowledges
the alarm under the cursor (a signed command, gateway/operator.py), ``f`` steps the area filter, ``enter``
opens the detail of the device under the cursor; ``actions`` adds keys of the caller's own (``minegw
demo``'s fault injection), shown in the footer.
"""
from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar

from rich.console import Console
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Static

from gateway.config import MqttConfig, SiteConfig
from gateway.console import views
from gateway.console.feed import LINK, Feed
from gateway.console.model import SiteModel
from gateway.contract import Topics
from gateway.operator import Operator

Action = tuple[str, str, Callable[[], Awaitable[object]]]  # (key, description, coroutine function)


class FaceStrip(Widget):
    """One longwall face's supports, drawn to the widget's width."""

    DEFAULT_CSS = "FaceStrip { height: auto; }"

    def __init__(self, model: SiteModel, device: str):
        super().__init__(id=f"face-{device}")
        self.model, self.device, self.cache = model, device, {}

    def render(self):
        return views.face_strip(self.model, self.model.devices[self.device], self.size.width, self.cache)


def fill(table: DataTable, rows: Sequence[tuple[str, tuple]]) -> None:
    """Replace the rows (key, cells), keeping the cursor on the same key when it is still there."""
    keep = selected_key(table)
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    keys = [key for key, _ in rows]
    if keep in keys:
        table.move_cursor(row=keys.index(keep))


def selected_key(table: DataTable) -> str | None:
    if not table.row_count:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # noqa: BLE001 - the cursor is off the rows
        return None


class DeviceScreen(Screen):
    """Every signal of one device with its quality and time, its link state and counters."""

    BINDINGS: ClassVar = [Binding("escape,q", "app.pop_screen", "back")]

    def __init__(self, model: SiteModel, device: str):
        super().__init__()
        self.model, self.device, self.drawn = model, device, None

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        table = DataTable(id="signals", zebra_stripes=True)
        table.add_columns(*views.SIGNAL_COLUMNS)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        d = self.model.devices[self.device]
        self.query_one("#summary", Static).update(views.device_summary(d, time.time()))
        if self.drawn != d.last_data:  # the table only when new data came
            self.drawn = d.last_data
            fill(self.query_one("#signals", DataTable),
                 [(n, views.signal_row(n, s)) for n, s in sorted(d.signals.items())])


class ConsoleApp(App):
    """The live console of ``site``. ``operator`` signs acknowledgements (None: ``a`` says how to get one);
    ``actions`` are extra keys (``(key, description, async callable)``); ``mqtt`` overrides the site's broker."""

    TITLE = "minegw console"
    CSS = """
    #banner { background: red; color: white; text-style: bold; height: auto; }
    #banner.hidden { display: none; }
    #status { height: 1; color: $text-muted; }
    .panel { border: round $primary; height: auto; padding: 0 1; }
    .row { height: auto; }
    .row > .panel { width: 1fr; }
    #devices, #alarms { height: auto; max-height: 18; }
    .row > #broadcast { width: 2fr; }
    """
    BINDINGS: ClassVar = [
        Binding("a", "ack", "ack alarm"),
        Binding("f", "filter", "area filter"),
        Binding("d", "detail", "device detail"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, site: SiteConfig, *, operator: Operator | None = None, actions: Sequence[Action] = (),
                 mqtt: MqttConfig | None = None, refresh: float = 1.0, ack_timeout: float = 10.0,
                 notes: Sequence[str] = ()):
        super().__init__()
        self.site, self.operator, self.refresh_s, self.ack_timeout = site, operator, refresh, ack_timeout
        self.cfg = mqtt or site.mqtt or MqttConfig()
        self.topics = Topics(self.cfg.topic_prefix, site.site.id)
        self.model = SiteModel(site, self.cfg.topic_prefix)
        self.feed = Feed(self.cfg, self.topics.everything())
        self.area_filter: str | None = None
        self.message = ""  # the last key's outcome, on the status line
        self.actions = list(actions)
        self.notes = list(notes)  # what the program running the console wants said (the demo: where history goes)
        self.title = f"minegw console · {site.site.name or site.site.id}"
        for i, (key, description, _) in enumerate(self.actions):
            self.bind(key, f"run_action({i})", description=description)

    # -- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="banner", classes="hidden")
        yield Static(id="status")
        with VerticalScroll():
            with Horizontal(classes="row"):
                yield self._panel("areas", "Areas (worst machine status)")
                yield self._panel("gateway", "Gateway health")
            for d in self.model.of_kind("roof_pressure"):
                strip = FaceStrip(self.model, d.id)
                strip.add_class("panel")
                strip.border_title = f"Longwall face {d.area}: leg pressure along the supports"
                yield strip
            devices = DataTable(id="devices", cursor_type="row", classes="panel")
            devices.border_title = "Devices (enter: detail)"
            devices.add_columns(*views.DEVICE_COLUMNS)
            yield devices
            alarms = DataTable(id="alarms", cursor_type="row", classes="panel")
            alarms.border_title = "Active alarms, newest first (a: acknowledge, f: filter by area)"
            alarms.add_columns(*views.ALARM_COLUMNS)
            yield alarms
            with Horizontal(classes="row"):
                yield self._panel("belts", "Belts")
                yield self._panel("cameras", "Cameras")
            with Horizontal(classes="row"):
                yield self._panel("broadcast", "Broadcast zones")
                yield self._panel("network", "Network rings")
        yield Footer()

    @staticmethod
    def _panel(name: str, title: str) -> Static:
        panel = Static(id=name, classes="panel")
        panel.border_title = title
        return panel

    def on_mount(self) -> None:
        self.feed.start()
        self.redraw()
        self.set_interval(self.refresh_s, self.tick)

    async def on_unmount(self) -> None:
        await asyncio.to_thread(self.feed.stop)

    # -- the loop ----------------------------------------------------------------------------------
    def tick(self) -> None:
        for topic, payload in self.feed.drain():
            if topic == LINK:
                text = payload.decode()
                self.model.connection(text == "up", text.removeprefix("down:") if text != "up" else "")
            else:
                self.model.apply(topic, payload)
        self.redraw()

    def redraw(self) -> None:
        now = time.time()
        if not self.screen_stack:  # the app is closing (a refresh or a message came after its last screen went)
            return
        if isinstance(self.screen, DeviceScreen):
            self.screen.redraw()
            return
        try:
            banner = self.query_one("#banner", Static)
        except NoMatches:  # another screen on top (the command palette), or the app is closing: nothing to draw
            return
        text = views.banner(self.model, self.feed.where, now)
        banner.set_class(text is None, "hidden")
        if text is not None:
            banner.update(text)
        self._status(now)
        self._strips()
        for name, render in (("areas", lambda: views.areas_panel(self.model)),
                             ("gateway", lambda: views.gateway_panel(self.model, now)),
                             ("belts", lambda: views.belts_panel(self.model)),
                             ("cameras", lambda: views.cameras_panel(self.model, now)),
                             ("broadcast", lambda: views.broadcast_panel(self.model, now)),
                             ("network", lambda: views.network_panel(self.model))):
            self.query_one(f"#{name}", Static).update(render())
        area = self.area_filter
        fill(self.query_one("#devices", DataTable),
             [(d.id, views.device_row(d, now)) for d in self.model.devices.values() if area in (None, d.area)])
        fill(self.query_one("#alarms", DataTable),
             [(a.alarm, views.alarm_row(a, now)) for a in self.model.active_alarms(area)])

    def _status(self, now: float) -> None:
        link = "connected" if self.model.link.connected else "NOT CONNECTED"
        text = (f"{self.site.site.id} · broker {self.feed.where} ({self.cfg.protocol}) {link} · "
                f"{self.model.received} messages · filter: {self.area_filter or 'all areas'}"
                + "".join(f" · {note}" for note in self.notes)
                + (f" · {self.message}" if self.message else ""))
        self.query_one("#status", Static).update(text)

    def _strips(self) -> None:
        known = {s.device for s in self.query(FaceStrip)}
        for d in self.model.of_kind("roof_pressure"):
            if d.id not in known:  # a face the site file did not name: its messages said what it is
                strip = FaceStrip(self.model, d.id)
                strip.add_class("panel")
                strip.border_title = f"Longwall face {d.area}: leg pressure along the supports"
                self.query_one(VerticalScroll).mount(strip, after=0)
        for strip in self.query(FaceStrip):
            strip.refresh(layout=True)

    # -- keys ----------------------------------------------------------------------------------------
    def action_filter(self) -> None:
        areas = [None, *self.model.areas()]
        self.area_filter = areas[(areas.index(self.area_filter) + 1) % len(areas)]
        self.redraw()

    def action_detail(self) -> None:
        if isinstance(self.screen, DeviceScreen):
            return
        device = selected_key(self.query_one("#devices", DataTable))
        if device is not None:
            self.push_screen(DeviceScreen(self.model, device))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "devices":
            self.action_detail()

    def action_ack(self) -> None:
        alarm = selected_key(self.query_one("#alarms", DataTable))
        if alarm is None:
            self.say("no alarm selected")
        elif self.operator is None:
            self.say("to acknowledge, start the console with --key FILE (the operator's key)")
        else:
            self.say(f"acknowledging {alarm} …")
            self.run_worker(self._ack(alarm), group="commands")

    async def _ack(self, alarm: str) -> None:
        """The signed ack goes out on a connection of its own, off the loop (paho's request waits)."""
        try:
            reply = await asyncio.to_thread(self.operator.send, self.cfg, self.topics, "ack", self.ack_timeout,
                                            self.site.commands.max_age, gateway=self.site.site.gateway_id,
                                            alarm=alarm)
        except Exception as exc:  # noqa: BLE001 - CommandRefused, MqttError, ...: shown, the console keeps running
            self.say(f"ack {alarm}: {exc}")
            return
        if reply is None:
            self.say(f"ack {alarm}: no reply from the gateway within {self.ack_timeout:g} s")
        elif reply.ok:
            self.say(f"ack {alarm}: ok, now {reply.state}")
        else:
            self.say(f"ack {alarm}: refused: {reply.error}")

    async def action_run_action(self, index: int) -> None:
        _, description, call = self.actions[index]
        self.say(f"{description} …")
        self.run_worker(self._run_action(description, call), group="actions")

    async def _run_action(self, description: str, call: Callable[[], Awaitable[object]]) -> None:
        try:
            result = await call()
        except Exception as exc:  # noqa: BLE001 - the caller's action failed: say so, keep running
            self.say(f"{description}: failed: {exc}")
            return
        self.say(f"{description}: {result}" if result else f"{description}: done")

    def say(self, text: str) -> None:
        self.message = text
        if not isinstance(self.screen, DeviceScreen):
            self._status(time.time())


def screen_text(app: App) -> str:
    """The screen as plain text: what :meth:`App.export_screenshot` renders (the same compositor call), as text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      color_system=None, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True))  # textual has no public text export
    return "\n".join(line.rstrip() for line in console.export_text(styles=False).splitlines())
