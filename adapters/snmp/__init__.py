"""SNMP: ring switches and UPS (issue 17). Profiles are data (``profiles/*.yaml``)."""
