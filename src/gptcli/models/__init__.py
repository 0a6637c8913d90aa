"""Resolving a model name to a file (bundled, registered, pulled) and opening its backend."""
