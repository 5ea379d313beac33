"""The mine's ring networks: what the site file says of them, and diagnosis over the switches' states (issue 17)."""
