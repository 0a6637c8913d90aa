"""Settings, built once for every command: flags > role > profile > environment > config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from gptcli.config import SamplingOptions, Settings, load_settings
from gptcli.conversation.roles import role_layer
from gptcli.errors import UsageError
from gptcli.paths import AppPaths


def build_settings(
    paths: AppPaths,
    flags: Mapping[str, Any],
    role: str | None = None,
    variables: Sequence[str] = (),
) -> Settings:
    """The settings of one command: its flags over the role's, the profile's, the
    environment's and the config file's values, checked."""
    roles = role_layer(paths.config_dir, role, list(variables))
    return load_settings(paths.config_file, flags, roles)


def constrained(
    sampling: SamplingOptions, schema_source: str | None, grammar_source: str | None
) -> tuple[SamplingOptions, dict[str, Any] | None]:
    """``sampling`` with the grammar of ``--schema`` or ``--grammar``, and the schema the
    answer is validated against."""
    from gptcli.conversation.structured import load_grammar, load_schema, schema_grammar

    if schema_source and grammar_source:
        raise UsageError("--schema and --grammar cannot be combined")
    if schema_source:
        schema = load_schema(schema_source)
        return replace(sampling, grammar=schema_grammar(schema), schema=schema), schema
    if grammar_source:
        return replace(sampling, grammar=load_grammar(grammar_source)), None
    return sampling, None
