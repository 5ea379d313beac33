"""Video: the underground relay (:mod:`.relay` and its parts, settings in :mod:`.config`) and stream health from
the picture (:mod:`.health`, :mod:`.picture`).

:mod:`.health` and :mod:`.picture` import nothing of ours but the core, so adapters may use them.
"""
