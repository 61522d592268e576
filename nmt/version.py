"""The toolkit's version: one string, in a module that imports nothing, so that every module (and
pyproject.toml) can read it without importing the `nmt` package's `__init__` and making a cycle through it."""

__version__ = "0.1.0"
