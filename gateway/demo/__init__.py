"""``minegw demo``: a whole demo mine on this machine (gateway/demo/run.py), its site (site.py), broker
(broker.py), story (story.py) and the subscriber that sums it up (watch.py)."""
from gateway.demo.run import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]
