"""Video: stream health from the picture (:mod:`.health`, :mod:`.picture`); the relay lives beside them.

:mod:`.health` and :mod:`.picture` import nothing of ours but the core, so adapters may use them.
"""
