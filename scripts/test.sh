#!/usr/bin/env bash
# The one test command (README, CI): installs what is missing on a fresh
# Debian/Ubuntu machine, then runs the whole suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v influxd >/dev/null || need_apt+=(influxdb)
[ -x /usr/sbin/snmpd ] || command -v snmpd >/dev/null || need_apt+=(snmpd)
command -v snmpget >/dev/null || need_apt+=(snmp)
command -v pdftotext >/dev/null || need_apt+=(poppler-utils)  # the report tests read the PDF back
[ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need_apt+=(fonts-noto-cjk)  # Chinese reports
# video (docs/video.md): GStreamer's RTSP server and x264 for the camera simulator, ffprobe for the
# tests, and what PyGObject builds against
command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
# (libgstpango: the camera simulator's clockoverlay, in gstreamer1.0-x, which --no-install-recommends leaves out)
ls /usr/lib/*/girepository-1.0/GstRtspServer-1.0.typelib /usr/lib/*/gstreamer-1.0/libgstx264.so \
   /usr/lib/*/gstreamer-1.0/libgstvideoparsersbad.so /usr/lib/*/gstreamer-1.0/libgstpango.so >/dev/null 2>&1 ||
  need_apt+=(gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
             gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav gstreamer1.0-x)
pkg-config --exists gobject-introspection-1.0 cairo 2>/dev/null || need_apt+=(libgirepository1.0-dev libcairo2-dev pkg-config gcc)
if ((${#need_apt[@]})); then
  echo "installing ${need_apt[*]} (apt-get)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi
# The packages start system services we do not use: tests run their own instances.
for svc in mosquitto influxdb snmpd; do
  systemctl is-active --quiet "$svc" 2>/dev/null && { systemctl stop "$svc" || true; }
done

VENV=${MINEGW_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test,video]'
export PATH="$PWD/$VENV/bin:/usr/sbin:$PATH"
# Two pytest workers (pytest-xdist) by default: most tests wait on real servers, so two share two cores
# well (the suite takes about half the time). Every worker starts its own Mosquitto, InfluxDB and snmpd on
# free ports. `--dist load`, not loadfile: xdist 3.8's file and scope schedulers hang for good once a worker
# dies (pytest-xdist#784, #1378); load reports the test it died in and goes on. MINEGW_TEST_WORKERS=0: one process.
exec "$VENV/bin/python" -m pytest -n "${MINEGW_TEST_WORKERS:-2}" --dist load "$@"
