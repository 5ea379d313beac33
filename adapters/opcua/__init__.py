"""OPC UA: roof-pressure monitoring (矿压监测) systems, read through subscriptions or polling."""
