"""The ground floor: the data model and small helpers that every layer uses and that import nothing else
of the project (docs/architecture.md)."""
