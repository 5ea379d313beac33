"""OPC UA simulators: a longwall roof-pressure monitoring system (see server.py, longwall.py)."""
