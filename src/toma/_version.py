"""The version of toma, read by the packaging (pyproject.toml) and by ``toma --version``."""

__version__ = "0.1.0"
