"""The surface side of minegw: services that run in the dispatch centre, not on the underground gateway.

:mod:`gateway.surface.ingest`: the historian ingest workers (``minegw ingest``), MQTT → InfluxDB.
"""
