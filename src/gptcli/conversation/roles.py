"""Roles: named personas (system prompt + default options, optionally a model).

Built-in roles cover the uses gptcli is made for; users add their own as TOML
files in ``<config dir>/roles/NAME.toml``::

    description = "Answers like a patient tutor"
    system = "You are a tutor for {subject}. ..."
    temperature = 0.4
    model = "smollm2"          # optional
    tools = ["calc"]           # optional: tools it enables, as with -T

``{placeholders}`` in the system prompt are filled from ``--var key=value``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptcli.config import KNOWN_KEYS, SAMPLING_KEYS, check_value
from gptcli.errors import ConfigError, UsageError
from gptcli.models.registry import check_alias
from gptcli.parsing import TOMLDecodeError, loads_toml

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# A role sets the sampling options (a seed is a run's, not a persona's) and the model.
ROLE_OPTION_KEYS = frozenset({*SAMPLING_KEYS, "model"} - {"seed"})


@dataclass(frozen=True)
class Role:
    """A persona: what the system prompt says and the options it starts from."""

    name: str
    system: str
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    builtin: bool = False

    @property
    def placeholders(self) -> list[str]:
        return sorted(set(_PLACEHOLDER.findall(self.system)))

    def render(self, variables: dict[str, str]) -> str:
        missing = [p for p in self.placeholders if p not in variables]
        if missing:
            needed = " ".join(f"--var {m}=..." for m in missing)
            raise UsageError(f"role {self.name!r} needs {needed}")
        return _PLACEHOLDER.sub(lambda m: variables[m.group(1)], self.system)


BUILTIN_ROLES = {
    role.name: role
    for role in (
        Role(
            "assistant",
            "You are a helpful, honest assistant. Answer clearly and concisely.",
            "General help (the default persona)",
            builtin=True,
        ),
        Role(
            "support",
            "You are a friendly customer-support agent for {product}. Be polite and patient, "
            "ask for details when a problem is unclear, give numbered steps, and never invent "
            "policies or promises.",
            "Customer support for a product (--var product=...)",
            {"temperature": 0.3},
            builtin=True,
        ),
        Role(
            "tutor",
            "You are a patient tutor. Explain step by step with simple examples, check "
            "understanding with a short question, and do not just give away answers to "
            "exercises.",
            "Teaches step by step",
            {"temperature": 0.4},
            builtin=True,
        ),
        Role(
            "summarizer",
            "You summarise texts faithfully: keep every important fact, name and number, "
            "add nothing that is not in the text, and use short bullet points.",
            "Faithful summaries of documents and news",
            {"temperature": 0.2},
            builtin=True,
        ),
        Role(
            "storyteller",
            "You are a creative storyteller. Write vivid, original fiction with natural "
            "dialogue, and keep characters and facts consistent across the conversation.",
            "Fiction and creative writing",
            {"temperature": 0.9, "top_p": 0.95},
            builtin=True,
        ),
        Role(
            "shell",
            "You turn requests into one shell command for {shell} on {os}. Reply with the "
            "command only, on one line, with no explanation and no code fences.",
            "One shell command per request (used by gptcli cmd)",
            {"temperature": 0.0, "max_tokens": 200},
            builtin=True,
        ),
    )
}


def roles_dir(config_dir: Path) -> Path:
    return config_dir / "roles"


def _parse_role(name: str, path: Path) -> Role:
    try:
        data = loads_toml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TOMLDecodeError) as exc:
        raise ConfigError(f"role file {path}: {exc}") from None
    system = data.get("system")
    if not isinstance(system, str) or not system.strip():
        raise ConfigError(f"role file {path}: 'system' must be a non-empty string")
    options: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("system", "description"):
            continue
        if key == "tools":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"role file {path}: tools must be a list of tool names")
            options["tools"] = tuple(value)
            continue
        if key not in ROLE_OPTION_KEYS or key not in KNOWN_KEYS:
            raise ConfigError(f"role file {path}: unknown setting {key!r}")
        try:
            options[key] = check_value(key, value)
        except ValueError as exc:
            raise ConfigError(f"role file {path}: {key} {exc}") from None
    return Role(name, system, str(data.get("description", "")), options)


def load_roles(config_dir: Path) -> dict[str, Role]:
    """Built-in roles, overridden by the user's files of the same name."""
    roles = dict(BUILTIN_ROLES)
    directory = roles_dir(config_dir)
    if directory.is_dir():
        for path in sorted(directory.glob("*.toml")):
            name = path.name.removesuffix(".toml")
            try:
                check_alias(name)
            except UsageError:
                continue
            roles[name] = _parse_role(name, path)
    return roles


def get_role(config_dir: Path, name: str) -> Role:
    roles = load_roles(config_dir)
    if name not in roles:
        raise UsageError(f"no role named {name!r} (gptcli roles list shows them)")
    return roles[name]


def parse_vars(pairs: list[str] | None) -> dict[str, str]:
    variables: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not _PLACEHOLDER.fullmatch("{" + key + "}"):
            raise UsageError(f"--var needs KEY=VALUE, got {pair!r}")
        variables[key] = value
    return variables


def role_file_text(system: str, description: str, options: dict[str, Any]) -> str:
    from gptcli.config import json_string

    lines = [f"description = {json_string(description)}", f"system = {json_string(system)}"]
    for key, value in options.items():
        lines.append(f"{key} = {json_string(value) if isinstance(value, str) else value}")
    text = "\n".join(lines) + "\n"
    loads_toml(text)
    return text


def role_layer(config_dir: Path, name: str | None, pairs: list[str] | None) -> dict[str, Any]:
    """The settings a role contributes (system prompt and options), or none."""
    variables = parse_vars(pairs)
    if name is None:
        if variables:
            raise UsageError("--var needs a --role whose system prompt has {placeholders}")
        return {}
    role = get_role(config_dir, name)
    return {**role.options, "system": role.render(variables)}
