"""The release, in one place: the build reads it, and so do `--version` and `doctor`."""

__version__ = "0.1.0"
