"""Messages generated from ``proto/`` when the package is built (``setup.py``); never checked in."""
