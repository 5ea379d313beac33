"""dashboards.push against a fake Grafana: a local HTTP server with the part of Grafana's HTTP API
that a push uses, checking requests as Grafana does (no Grafana server can be installed here).

grafana-client is an extra that must stay out of the test venv (its urllib3-future takes the place
of urllib3), so the pushes run as ``python -m dashboards.push`` in a venv of their own, made once and
kept in pytest's cache (``.pytest_cache/d/grafana-venv/``, or $MINEGW_GRAFANA_VENV): grafana-client
alone, in the range of the ``grafana`` extra, with the repo on PYTHONPATH and this venv's
site-packages after its own (for the project's other dependencies). Where grafana-client can be
imported, this interpreter runs them. No network to make that venv: the tests fail, saying so.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import sysconfig
import threading
import tomllib
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dashboards import push as push_module
from tests.util import free_port

REPO = Path(__file__).resolve().parent.parent
TOKEN = "glsa_minegwTestToken_0123abcd"
VIEWER_TOKEN = "glsa_viewerOnly_4567ef"
BASIC = ("admin", "s3cret")
DASHBOARDS = {
    "t-1": {"id": 7, "uid": "t-1", "title": "T1", "schemaVersion": 41, "panels": []},
    "t-2": {"uid": "t-2", "title": "T2", "schemaVersion": 41, "panels": []},
}


# ---- the fake Grafana ----

@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: object


class FakeGrafana:
    """Grafana's /api/health, /api/frontend/settings, /api/folders and /api/dashboards/db on 127.0.0.1.

    Tokens: TOKEN is an editor's, VIEWER_TOKEN a viewer's (403 on writes); BASIC is an admin's
    user:password. ``prefix`` serves the API under a sub-path; ``html`` answers every request with a
    web page (not Grafana); ``hide_version`` leaves the version out of /api/health.
    """

    def __init__(self, version: str = "11.6.0", prefix: str = "", html: bool = False, hide_version: bool = False):
        self.version, self.prefix, self.html, self.hide_version = version, prefix, html, hide_version
        self.requests: list[Request] = []
        self.folders: dict[str, dict] = {}  # uid -> folder
        self.dashboards: dict[str, dict] = {}  # uid -> {"dashboard", "id", "version", "folderUid"}
        self._ids = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer()

            def do_POST(self):
                self._answer()

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                request = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with fake._lock:
                    fake.requests.append(request)
                    status, payload = fake.handle(request)
                if isinstance(payload, str):
                    data, kind = payload.encode(), "text/html; charset=utf-8"
                else:
                    data, kind = json.dumps(payload).encode(), "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}{prefix}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGrafana:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def calls(self) -> list[str]:
        return [f"{r.method} {r.path.split('?')[0]}" for r in self.requests]

    # -- the API --

    def handle(self, r: Request) -> tuple[int, object]:
        if self.html:
            return 200, "<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"
        path = r.path.split("?")[0]
        if not path.startswith(self.prefix + "/"):
            return 404, {"message": "Not found"}
        path = path[len(self.prefix):]
        if (r.method, path) == ("GET", "/api/health"):  # Grafana answers it before any authentication
            health = {"commit": "0123abc", "database": "ok"}
            return 200, health if self.hide_version else {**health, "version": self.version}
        role, refusal = self._who(r.headers.get("authorization", ""))
        if not role:
            return 401, {"message": refusal, "traceID": ""}
        if (r.method, path) == ("GET", "/api/frontend/settings"):
            return 200, {"buildInfo": {"version": self.version, "commit": "0123abc"}, "appSubUrl": self.prefix}
        if (r.method, path) == ("GET", "/api/folders"):
            return 200, [{"id": f["id"], "uid": f["uid"], "title": f["title"]} for f in self.folders.values()]
        if r.method == "GET" and path.startswith("/api/folders/"):
            folder = self.folders.get(path.removeprefix("/api/folders/"))
            return (200, folder) if folder else (404, {"message": "folder not found", "status": "not-found"})
        if (r.method, path) == ("POST", "/api/folders"):
            return self._create_folder(role, r.body)
        if (r.method, path) == ("POST", "/api/dashboards/db"):
            return self._save_dashboard(role, r.body)
        return 404, {"message": "Not found"}

    def _who(self, authorization: str) -> tuple[str | None, str]:
        scheme, _, credential = authorization.partition(" ")
        if scheme == "Bearer":
            role = {TOKEN: "Editor", VIEWER_TOKEN: "Viewer"}.get(credential)
            return role, "Invalid API key"
        if scheme == "Basic":
            user, _, password = base64.b64decode(credential).decode().partition(":")
            return ("Admin" if (user, password) == BASIC else None), "invalid username or password"
        return None, "Unauthorized"

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _create_folder(self, role: str, body: object) -> tuple[int, object]:
        if role == "Viewer":
            return 403, {"accessErrorId": "ACE0123", "message": "You'll need additional permissions to perform "
                         "this action. Permissions needed: folders:create", "title": "Access denied"}
        if not isinstance(body, dict) or not body.get("title"):
            return 400, {"message": "folder title cannot be empty"}
        uid = body.get("uid") or uuid.uuid4().hex[:14]
        if uid in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        if any(f["title"] == body["title"] for f in self.folders.values()):
            return 409, {"message": "a folder or dashboard in the general folder with the same name already exists"}
        slug = re.sub(r"[^a-z0-9]+", "-", body["title"].lower()).strip("-")
        folder = {"id": self._next_id(), "uid": uid, "title": body["title"], "url": f"{self.prefix}/dashboards/f/"
                  f"{uid}/{slug}", "hasAcl": False, "canSave": True, "canEdit": True, "canAdmin": True,
                  "version": 1}
        self.folders[uid] = folder
        return 200, folder

    def _save_dashboard(self, role: str, body: object) -> tuple[int, object]:
        if role == "Viewer":
            return 403, {"accessErrorId": "ACE4567", "message": "You'll need additional permissions to perform "
                         "this action. Permissions needed: dashboards:create", "title": "Access denied"}
        dashboard = body.get("dashboard") if isinstance(body, dict) else None
        if not isinstance(dashboard, dict):
            return 400, {"message": "bad request data"}
        if not str(dashboard.get("title", "")).strip():
            return 400, {"message": "Dashboard title cannot be empty", "status": "empty-name"}
        if not dashboard.get("uid"):
            return 400, {"message": "dashboard uid is required"}
        folder_uid = body.get("folderUid") or ""
        if folder_uid and folder_uid not in self.folders:
            return 400, {"message": "folder not found", "status": "not-found"}
        uid = dashboard["uid"]
        existing = self.dashboards.get(uid)
        if dashboard.get("id") is not None and (not existing or existing["id"] != dashboard["id"]):
            return 404, {"message": "Dashboard not found", "status": "not-found"}
        if existing and not body.get("overwrite") and dashboard.get("version") != existing["version"]:
            return 412, {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"}
        saved = {"dashboard": dashboard, "id": existing["id"] if existing else self._next_id(),
                 "version": existing["version"] + 1 if existing else 1, "folderUid": folder_uid}
        self.dashboards[uid] = saved
        slug = re.sub(r"[^a-z0-9]+", "-", dashboard["title"].lower()).strip("-")
        return 200, {"id": saved["id"], "uid": uid, "url": f"{self.prefix}/d/{uid}/{slug}", "status": "success",
                     "version": saved["version"], "slug": slug, "folderUid": folder_uid}


# ---- the interpreter that has grafana-client ----

def _grafana_extra() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["grafana"]


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _make_venv(venv: Path, requirements: list[str]) -> None:
    """A venv with grafana-client alone, that also sees this interpreter's packages (after its own)."""
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    steps = [[sys.executable, "-m", "venv", str(building)],
             [str(_venv_python(building)), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              "--timeout", "30", *requirements]]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            done = None
        if done is None or done.returncode:
            shutil.rmtree(building, ignore_errors=True)
            tail = "timed out after 300 s" if done is None else (done.stderr or done.stdout).strip()[-1500:]
            pytest.fail(f"cannot make the venv with {' '.join(requirements)} for the push tests at {venv} "
                        f"(needs PyPI): {' '.join(step[:4])} ... failed:\n{tail}", pytrace=False)
    purelib = subprocess.run([str(_venv_python(building)), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    ours = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    # A path in a .pth file goes to the end of sys.path: grafana-client's urllib3-future stays first.
    (Path(purelib) / "zz_minegw_test_venv.pth").write_text("".join(f"{p}\n" for p in ours))
    (building / "minegw-requirements.txt").write_text("\n".join(requirements) + "\n")
    try:
        building.rename(venv)
    except OSError:  # another session made it meanwhile
        shutil.rmtree(building, ignore_errors=True)


@pytest.fixture(scope="session")
def grafana_python(pytestconfig, tmp_path_factory) -> str:
    try:
        import grafana_client  # noqa: F401
        return sys.executable
    except ImportError:
        pass
    requirements = _grafana_extra()
    where = os.environ.get("MINEGW_GRAFANA_VENV")
    if where:
        root = Path(where)
    elif getattr(pytestconfig, "cache", None) is not None:
        root = pytestconfig.cache.mkdir("grafana-venv")
    else:
        root = tmp_path_factory.mktemp("grafana-venv")
    key = hashlib.sha256(f"{requirements} {sys.prefix} {sys.version}".encode()).hexdigest()[:12]
    venv = root / f"venv-{key}"
    python = _venv_python(venv)
    ready = venv / "minegw-requirements.txt"
    if not ready.exists() or subprocess.run([str(python), "-c", "import grafana_client"],
                                            capture_output=True).returncode:
        shutil.rmtree(venv, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        _make_venv(venv, requirements)
    return str(python)


@pytest.fixture
def json_dir(tmp_path) -> Path:
    directory = tmp_path / "json"
    directory.mkdir()
    for uid, model in DASHBOARDS.items():
        (directory / f"{uid}.json").write_text(json.dumps(model))
    return directory


@pytest.fixture
def run_push(grafana_python, json_dir):
    """Runs ``python -m dashboards.push --url URL --token TOKEN --dir json_dir [more]``."""
    def run(url: str, *more: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in ("GRAFANA_URL", "GRAFANA_TOKEN", "PYTHONPATH")}
        env["PYTHONPATH"] = str(REPO)
        command = [grafana_python, "-m", "dashboards.push", "--url", url, "--dir", str(json_dir), *more]
        if token is not None:
            command += ["--token", token]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    return run


def _bodies(grafana: FakeGrafana, call: str) -> list:
    return [r.body for r in grafana.requests if f"{r.method} {r.path.split('?')[0]}" == call]


# ---- pushes ----

def test_first_push_creates_the_folder_and_every_dashboard(run_push):
    with FakeGrafana() as grafana:
        done = run_push(grafana.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"created  t-1  version 1  {grafana.url}/d/t-1/t1",
                                        f"created  t-2  version 1  {grafana.url}/d/t-2/t2"]
    assert grafana.calls() == ["GET /api/health", "GET /api/folders", "POST /api/folders",
                               "POST /api/dashboards/db", "POST /api/dashboards/db"]
    assert _bodies(grafana, "POST /api/folders") == [{"title": "minegw", "uid": "minegw"}]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in grafana.requests[1:])
    for body, (uid, model) in zip(_bodies(grafana, "POST /api/dashboards/db"), DASHBOARDS.items()):
        assert body == {"dashboard": {k: v for k, v in model.items() if k != "id"}, "folderUid": "minegw",
                        "overwrite": True, "message": "minegw dashboards push"}
        assert "id" not in body["dashboard"]  # t-1 has "id": 7 in its file: Grafana would answer 404
    assert {uid: d["folderUid"] for uid, d in grafana.dashboards.items()} == {"t-1": "minegw", "t-2": "minegw"}


def test_second_push_updates_and_keeps_the_folder(run_push):
    with FakeGrafana() as grafana:
        assert run_push(grafana.url).returncode == 0
        first = len(grafana.requests)
        done = run_push(grafana.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"updated  t-1  version 2  {grafana.url}/d/t-1/t1",
                                        f"updated  t-2  version 2  {grafana.url}/d/t-2/t2"]
    assert [f"{r.method} {r.path}" for r in grafana.requests[first:]] == [
        "GET /api/health", "GET /api/folders", "POST /api/dashboards/db", "POST /api/dashboards/db"]
    assert list(grafana.folders) == ["minegw"]
    assert {uid: d["version"] for uid, d in grafana.dashboards.items()} == {"t-1": 2, "t-2": 2}


def test_an_existing_folder_is_found_by_title_or_made_with_a_uid_of_grafana(run_push):
    with FakeGrafana() as grafana:
        grafana.folders["x7Fq"] = {"id": 99, "uid": "x7Fq", "title": "Mine dashboards"}
        assert run_push(grafana.url, "--folder", "Mine dashboards").returncode == 0
        assert "POST /api/folders" not in grafana.calls()
        assert {d["folderUid"] for d in grafana.dashboards.values()} == {"x7Fq"}

        assert run_push(grafana.url, "--folder", "Longwall").returncode == 0
    assert _bodies(grafana, "POST /api/folders") == [{"title": "Longwall"}]  # a uid only for the default folder
    longwall = next(uid for uid, f in grafana.folders.items() if f["title"] == "Longwall")
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {longwall}


def test_the_default_folder_renamed_in_grafana_is_found_by_its_uid(run_push):
    with FakeGrafana() as grafana:
        grafana.folders["minegw"] = {"id": 5, "uid": "minegw", "title": "Mine (renamed)"}
        done = run_push(grafana.url)
    assert done.returncode == 0, done.stderr
    assert "POST /api/folders" not in grafana.calls()
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"minegw"}


def test_an_empty_folder_pushes_into_general(run_push):
    with FakeGrafana() as grafana:
        done = run_push(grafana.url, "--folder", "")
    assert done.returncode == 0, done.stderr
    assert grafana.calls() == ["GET /api/health", "POST /api/dashboards/db", "POST /api/dashboards/db"]
    assert all("folderUid" not in body for body in _bodies(grafana, "POST /api/dashboards/db"))


def test_grafana_under_a_sub_path_with_basic_auth(run_push):
    with FakeGrafana(prefix="/grafana") as grafana:
        done = run_push(grafana.url + "/", token=f"{BASIC[0]}:{BASIC[1]}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"created  t-1  version 1  {grafana.url}/d/t-1/t1"
    assert grafana.requests[0].path == "/grafana/api/health"
    basic = "Basic " + base64.b64encode(f"{BASIC[0]}:{BASIC[1]}".encode()).decode()
    assert all(r.headers["authorization"] == basic for r in grafana.requests[1:])


def test_a_hidden_version_is_read_from_the_frontend_settings(run_push):
    with FakeGrafana(hide_version=True, version="12.0.1+security-01") as grafana:
        done = run_push(grafana.url)
    assert done.returncode == 0, done.stderr
    assert grafana.calls()[:2] == ["GET /api/health", "GET /api/frontend/settings"]


# ---- refusals and failures: one line, exit 1 ----

def _error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_a_wrong_token_is_refused_with_401(run_push):
    with FakeGrafana() as grafana:
        line = _error(run_push(grafana.url, token="glsa_wrong"))
    assert line == "error: Grafana refused the token (HTTP 401): Invalid API key"
    assert grafana.calls() == ["GET /api/health", "GET /api/folders"]


def test_a_viewer_token_lacks_permission_and_the_call_is_named(run_push):
    with FakeGrafana() as grafana:
        line = _error(run_push(grafana.url, token=VIEWER_TOKEN))
    assert "lacks permission for POST /api/folders (create folder 'minegw') (HTTP 403)" in line
    assert "Permissions needed: folders:create" in line


def test_an_unreachable_port_cannot_be_reached(run_push):
    url = f"http://127.0.0.1:{free_port()}"
    line = _error(run_push(url))
    assert line.startswith(f"error: cannot reach Grafana at {url}: ")
    assert "refused" in line.lower()


def test_a_server_that_never_answers_times_out(run_push):
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        line = _error(run_push(url, "--timeout", "1"))
    assert line.startswith(f"error: cannot reach Grafana at {url}: no answer within 1 s")


def test_grafana_older_than_11_is_refused(run_push):
    with FakeGrafana(version="10.4.2") as grafana:
        line = _error(run_push(grafana.url))
    assert line == (f"error: Grafana 10.4.2 at {grafana.url} is too old: the dashboards (schemaVersion 41) are "
                    f"written for Grafana 11.6 and need 11.0 or newer")
    assert grafana.calls() == ["GET /api/health"]


def test_an_answer_that_is_not_grafana(run_push):
    with FakeGrafana(html=True) as web:
        line = _error(run_push(web.url))
    assert line == f"error: {web.url} does not answer like Grafana: GET /api/health gave an HTML page"


def test_without_overwrite_an_existing_dashboard_is_refused_with_412(run_push):
    with FakeGrafana() as grafana:
        assert run_push(grafana.url).returncode == 0
        done = run_push(grafana.url, "--no-overwrite")
    line = _error(done)
    assert "Grafana refused POST /api/dashboards/db (dashboard 't-1') (HTTP 412 version-mismatch): " \
           "The dashboard has been changed by someone else" in line
    assert done.stdout == ""
    assert [b["overwrite"] for b in _bodies(grafana, "POST /api/dashboards/db")] == [True, True, False]


# ---- without grafana-client, and the JSON directory (no server needed) ----

def test_without_grafana_client_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "grafana_client", None)  # import grafana_client raises ImportError
    with pytest.raises(push_module.PushError) as caught:
        push_module.push_dashboards("http://127.0.0.1:1", TOKEN, DASHBOARDS)
    assert str(caught.value) == "grafana-client is not installed: pip install 'minegw[grafana]'"


def test_bad_input_is_refused_before_any_connection(tmp_path, capsys):
    with pytest.raises(push_module.PushError, match="give it as http://host:port"):
        push_module.push_dashboards("grafana:3000", TOKEN, DASHBOARDS)
    with pytest.raises(push_module.PushError, match="'a' carries the uid 'b'"):
        push_module.push_dashboards("http://127.0.0.1:1", TOKEN, {"a": {"uid": "b", "title": "B"}})
    assert push_module.main(["--url", "http://127.0.0.1:1", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path}: no dashboard JSON files (*.json)\n"
    (tmp_path / "broken.json").write_text("{")
    assert push_module.main(["--url", "http://127.0.0.1:1", "--dir", str(tmp_path)]) == 1
    assert "broken.json: not a JSON file" in capsys.readouterr().err
