"""skiplock's version, declared once: the package's metadata reads it from here
(pyproject.toml, [tool.hatch.version])."""

__version__ = "0.1.0"
