"""Preparation (``syncssl data prepare``): background models, person boxes, crops and tiles, written once as the
manifest the loader reads; :mod:`.owned` records what it wrote."""
