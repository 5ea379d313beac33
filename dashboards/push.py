"""Push the built dashboards to a Grafana server through its HTTP API.

Uses grafana-client, an optional extra (``pip install 'minegw[grafana]'``): it brings in
urllib3-future, which takes the place of urllib3 in the whole environment, so it is imported
here only when a push runs.

What a push does, with a Grafana service-account token (Editor role, or folders:read,
folders:create, dashboards:create and dashboards:write):

1. ``GET /api/health``: Grafana's version; older than 11.0 is refused (the dashboards are
   schemaVersion 41, written for Grafana 11.6, and older versions can misread them).
2. ``GET /api/folders``: the folder with the given title (the default folder ``minegw`` is
   also found by its uid ``minegw`` when it was renamed in Grafana); ``POST /api/folders``
   creates it when it is missing (the default one with the uid ``minegw``). Top-level folders only.
3. ``POST /api/dashboards/db`` for each dashboard, without its ``id`` (its uid identifies it),
   with ``folderUid``, ``overwrite`` and a version message.

Every failure is a :class:`PushError` with one line that says what went wrong.

Command line (the JSON files of a directory, ``dashboards/json/`` by default)::

    python -m dashboards.push --url http://grafana:3000 --token glsa_... [--folder minegw]
        [--no-overwrite] [--timeout 10] [--dir dashboards/json]

``--url`` and ``--token`` default to the environment variables GRAFANA_URL and GRAFANA_TOKEN
(better than a token on the command line, where ``ps`` shows it).
An https URL ending in ``?verify=false`` skips the check of Grafana's certificate (grafana-client).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

from gateway.core.errors import UserError

DEFAULT_FOLDER = "minegw"
DEFAULT_FOLDER_UID = "minegw"
MIN_GRAFANA = (11, 0)
MESSAGE = "minegw dashboards push"
INSTALL_HINT = "grafana-client is not installed: pip install 'minegw[grafana]'"
JSON_DIR = Path(__file__).parent / "json"


class PushError(UserError):
    """One line that says what went wrong; ``results`` holds the dashboards pushed before it."""

    def __init__(self, message: str, *, status: int | None = None, results: list[PushResult] | None = None):
        super().__init__(message)
        self.status = status  # the HTTP status of Grafana's answer, when there was one
        self.results = results or []


@dataclass(frozen=True)
class PushResult:
    uid: str
    title: str
    status: str  # "created" (Grafana's version 1) or "updated"
    version: int | None
    url: str  # Grafana's answer: the dashboard's path, e.g. "/d/minegw-overview/overview"


def push_dashboards(url: str, token: str | None, dashboards: dict[str, dict], folder: str | None = DEFAULT_FOLDER,
                    overwrite: bool = True, timeout: float = 10.0) -> list[PushResult]:
    """Send ``dashboards`` (uid -> JSON model) to the Grafana at ``url``, into the folder titled
    ``folder`` (created when missing; None: the General folder).

    ``token`` is a service-account token (sent as ``Authorization: Bearer``); ``user:password``
    is sent as basic auth instead; None or "" uses the credentials in the URL, if any.
    With ``overwrite`` False, a dashboard that already exists in Grafana is refused (HTTP 412).
    """
    models = _checked(dashboards)
    base = _base_url(url)
    shown = _shown(base)
    try:
        from grafana_client import GrafanaApi
    except ImportError:
        raise PushError(INSTALL_HINT) from None

    credential: str | tuple[str, str] | None = token or None
    if token and ":" in token:
        user, _, password = token.partition(":")
        credential = (user, password)
    api = GrafanaApi.from_url(base, credential=credential, timeout=timeout)
    call = _Caller(shown, timeout)

    _check_version(api, call)
    folder_uid = _folder_uid(api, call, folder) if folder else None
    results: list[PushResult] = []
    for model in models:
        body: dict[str, Any] = {"dashboard": {k: v for k, v in model.items() if k != "id"},
                                "overwrite": bool(overwrite), "message": MESSAGE}
        if folder_uid:
            body["folderUid"] = folder_uid
        try:
            answer = call(f"POST /api/dashboards/db (dashboard {model['uid']!r})", api.dashboard.update_dashboard, body)
        except PushError as exc:
            if exc.status == 412 and not overwrite:
                exc.args = (f"{exc} (pushed without overwrite: a dashboard that exists in Grafana is not replaced)",)
            exc.results = results
            raise
        if not isinstance(answer, dict) or "version" not in answer:
            raise PushError(f"{shown} does not answer like Grafana: POST /api/dashboards/db gave {_brief(answer)}",
                            results=results)
        version = answer.get("version")
        results.append(PushResult(uid=answer.get("uid") or model["uid"], title=model["title"],
                                  status="created" if version == 1 else "updated", version=version,
                                  url=answer.get("url") or ""))
    return results


# ---- the steps ----

def _checked(dashboards: dict[str, dict]) -> list[dict]:
    models = []
    for key, model in dashboards.items():
        if not isinstance(model, dict) or not model.get("uid") or not model.get("title"):
            raise PushError(f"dashboard {key!r} has no uid or no title")
        if model["uid"] != key:
            raise PushError(f"dashboard {key!r} carries the uid {model['uid']!r}")
        models.append(model)
    return models


def _check_version(api, call: _Caller) -> None:
    health = call("GET /api/health", api.client.GET, "/health", health=True)
    if not isinstance(health, dict):
        raise PushError(f"{call.shown} does not answer like Grafana: GET /api/health gave {_brief(health)}")
    version = health.get("version")
    if not version and "database" in health:
        # [auth.anonymous] hide_version keeps it out of /api/health; the signed-in settings still have it.
        settings = call("GET /api/frontend/settings", api.client.GET, "/frontend/settings")
        version = (settings.get("buildInfo") or {}).get("version") if isinstance(settings, dict) else None
    found = re.match(r"v?(\d+)\.(\d+)", str(version or ""))
    if not found:
        raise PushError(f"{call.shown} does not answer like Grafana: GET /api/health gives no version "
                        f"({_brief(health)})")
    if (int(found[1]), int(found[2])) < MIN_GRAFANA:
        raise PushError(f"Grafana {version} at {call.shown} is too old: the dashboards (schemaVersion 41) are "
                        f"written for Grafana 11.6 and need {MIN_GRAFANA[0]}.{MIN_GRAFANA[1]} or newer")


def _folder_uid(api, call: _Caller, title: str) -> str:
    folders = call("GET /api/folders (list folders)", api.folder.get_all_folders)
    if not isinstance(folders, list):
        raise PushError(f"{call.shown} does not answer like Grafana: GET /api/folders gave {_brief(folders)}")
    folders = [f for f in folders if isinstance(f, dict) and f.get("uid")]
    uid = DEFAULT_FOLDER_UID if title == DEFAULT_FOLDER else None
    for match in (lambda f: f.get("title") == title,
                  lambda f: str(f.get("title", "")).casefold() == title.casefold(),
                  lambda f: uid is not None and f["uid"] == uid):  # the default folder, renamed in Grafana
        found = next((f for f in folders if match(f)), None)
        if found:
            return found["uid"]
    try:
        created = call(f"POST /api/folders (create folder {title!r})", api.folder.create_folder, title, uid=uid)
    except PushError as exc:
        if exc.status != 409 or uid is None:
            raise
        # Not in the list (a nested folder, or made meanwhile) but there: use it.
        created = call(f"GET /api/folders/{uid}", api.folder.get_folder, uid)
    if not isinstance(created, dict) or not created.get("uid"):
        raise PushError(f"{call.shown} does not answer like Grafana: POST /api/folders gave {_brief(created)}")
    return created["uid"]


class _Caller:
    """Runs one grafana-client call and turns its failures into a PushError with one line."""

    def __init__(self, shown: str, timeout: float):
        self.shown, self.timeout = shown, timeout

    def __call__(self, what: str, fn: Callable, *args, health: bool = False, **kwargs):
        from grafana_client.client import GrafanaException, GrafanaTimeoutError
        from niquests.exceptions import InvalidJSONError, RequestException
        try:
            return fn(*args, **kwargs)
        except GrafanaTimeoutError:
            raise PushError(f"cannot reach Grafana at {self.shown}: no answer within {self.timeout:g} s "
                            f"({what})") from None
        except GrafanaException as exc:
            if not exc.status_code:
                raise PushError(f"cannot reach Grafana at {self.shown}: {_reason(exc)}") from None
            raise self._http_error(what, exc.status_code, exc.response, health) from None
        except InvalidJSONError:
            raise PushError(f"{self.shown} does not answer like Grafana: {what} gave no JSON") from None
        except RequestException as exc:
            raise PushError(f"cannot reach Grafana at {self.shown}: {_reason(exc)}") from None

    def _http_error(self, what: str, status: int, response: Any, health: bool) -> PushError:
        message = _grafana_message(response)
        if status == 401:
            text = f"Grafana refused the token (HTTP 401): {message}"
        elif status == 403:
            text = (f"the token lacks permission for {what} (HTTP 403): {message}; give its service account "
                    f"the Editor role (or folders:create and dashboards:write)")
        elif health and (status == 404 or not isinstance(response, dict)):
            text = f"{self.shown} does not answer like Grafana: GET /api/health gave HTTP {status}"
        elif status == 404:
            text = (f"{what}: not found (HTTP 404): {message}; is {self.shown} Grafana's root URL "
                    f"(with its sub-path, if it is served under one)?")
        elif status == 412:
            state = response.get("status") if isinstance(response, dict) else None
            text = f"Grafana refused {what} (HTTP 412{' ' + state if state else ''}): {message}"
        else:
            text = f"{what} failed (HTTP {status}): {message}"
        return PushError(text, status=status)


# ---- small helpers ----

def _base_url(url: str) -> str:
    """The URL as grafana-client wants it: a scheme, and a sub-path that ends with '/'."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PushError(f"Grafana URL {url!r}: give it as http://host:port or https://host[/sub-path]")
    path = parts.path.strip("/")
    return urlunsplit((parts.scheme, parts.netloc, path + "/" if path else "", parts.query, ""))


def _shown(base: str) -> str:
    """The URL without credentials or query, for messages."""
    parts = urlsplit(base)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _grafana_message(response: Any) -> str:
    if isinstance(response, dict):
        return str(response.get("message") or response.get("error") or _brief(response))
    return _brief(response)


def _brief(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if isinstance(value, str) and text.lstrip()[:1] == "<":
        return "an HTML page"
    text = " ".join(text.split())
    return (text[:200] + "…") if len(text) > 200 else (text or "an empty answer")


def _reason(exc: Exception) -> str:
    """The cause of a connection failure, short: 'Connection refused', 'Name or service not known', …"""
    text = " ".join(str(exc).split())
    for pattern, form in ((r"Failed to resolve '([^']+)' \(([^:)]+)", "cannot resolve {1} ({2})"),
                          (r"\[SSL[^\]]*\] ([^(\'\")]+)", "TLS: {1}"),
                          (r"\[Errno -?\d+\] ([^'\")\]]+)", "{1}"),
                          (r"object at 0x[0-9a-f]+>: ([^'\"]+)", "{1}")):
        found = re.search(pattern, text)
        if found:
            return form.format(*(g.strip() for g in [found[0], *found.groups()]))
    return (text[:200] + "…") if len(text) > 200 else text or type(exc).__name__


# ---- command line ----

def read_dir(directory: Path) -> dict[str, dict]:
    """uid -> JSON model of each ``*.json`` file in ``directory`` (sorted by file name)."""
    if not directory.is_dir():
        raise PushError(f"{directory}: no such directory")
    dashboards: dict[str, dict] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            model = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PushError(f"{path}: not a JSON file: {exc}") from None
        if not isinstance(model, dict) or not model.get("uid"):
            raise PushError(f"{path}: not a dashboard (no uid)")
        if model["uid"] in dashboards:
            raise PushError(f"{path}: uid {model['uid']!r} is used twice")
        dashboards[model["uid"]] = model
    if not dashboards:
        raise PushError(f"{directory}: no dashboard JSON files (*.json)")
    return dashboards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.push",
                                     description="Push the dashboards' JSON files to a Grafana server.")
    parser.add_argument("--url", default=os.environ.get("GRAFANA_URL"),
                        help="Grafana's root URL (default: $GRAFANA_URL)")
    parser.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN"),
                        help="service-account token, or user:password (default: $GRAFANA_TOKEN)")
    parser.add_argument("--folder", default=DEFAULT_FOLDER,
                        help=f"folder title, created when missing (default: {DEFAULT_FOLDER}; '': General)")
    parser.add_argument("--no-overwrite", action="store_true",
                        help="refuse to replace dashboards that exist in Grafana")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds for each HTTP call (default: 10)")
    parser.add_argument("--dir", type=Path, default=JSON_DIR, help=f"the JSON files (default: {JSON_DIR})")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("--url is required (or set GRAFANA_URL)")
    results: list[PushResult] = []
    try:
        dashboards = read_dir(args.dir)
        results = push_dashboards(args.url, args.token, dashboards, folder=args.folder or None,
                                  overwrite=not args.no_overwrite, timeout=args.timeout)
    except PushError as exc:
        results = exc.results
        error: PushError | None = exc
    else:
        error = None
    root = urlsplit(args.url)
    root = urlunsplit((root.scheme, root.netloc.rpartition("@")[2], "", "", ""))
    for r in results:
        print(f"{r.status:<8} {r.uid}  version {r.version}  {root}{r.url}")
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
