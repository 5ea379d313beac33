"""The historian path: readings → line protocol → durable buffer → InfluxDB."""
