"""Messages generated from the repository's ``proto/`` when the wheel is built (``hatch_build.py``)."""
