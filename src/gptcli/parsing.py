"""JSON and TOML from untrusted places, where every failure is a ValueError.

Session files, caches, registries, config and role files, schemas and a
server's stream chunks are parsed here. Both parsers recurse, so a document
nested a hundred thousand levels deep (``[[[[...``) raises RecursionError,
which is not a ValueError and would slip past every handler that turns a
broken file into one clear line. These wrappers make it one of the parser's
own errors.
"""

from __future__ import annotations

import json
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

NESTED = "nested too deeply"
TOMLDecodeError = tomllib.TOMLDecodeError


def loads_json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        document = text if isinstance(text, str) else ""
        raise json.JSONDecodeError(NESTED, document, 0) from None


def loads_toml(text: str) -> dict[str, Any]:
    try:
        return dict(tomllib.loads(text))
    except RecursionError:
        raise tomllib.TOMLDecodeError(NESTED) from None
