"""MQTT: the client factory and small clients (:mod:`.client`), the publishing sink (:mod:`.sink`)
and its spool on disk (:mod:`.spool`). The topics and payloads are in :mod:`gateway.contract`.
"""
from gateway.mqtt.client import MqttError, Will, make_client, publish_once, request, tail
from gateway.mqtt.sink import MqttSink

__all__ = ["MqttError", "MqttSink", "Will", "make_client", "publish_once", "request", "tail"]
