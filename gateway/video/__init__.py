"""Video: the underground relay (relay.py and its parts), picture health (health.py), their settings (config.py)."""
