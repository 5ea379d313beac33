"""``python -m gateway.cli``: the same as ``minegw``."""
from gateway.cli import main

main()
