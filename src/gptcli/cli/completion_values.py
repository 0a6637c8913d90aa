"""Dynamic values for shell completion: model aliases, session names, role names.

Each runs inside a completion request, so it only reads small files and never
loads a model.
"""

from __future__ import annotations


def _matching(values: list[str], incomplete: str) -> list[str]:
    return sorted(v for v in set(values) if v.startswith(incomplete))


def model_names(incomplete: str) -> list[str]:
    from gptcli.models.catalogue import catalogue
    from gptcli.models.registry import ModelRegistry
    from gptcli.models.resolve import BUNDLED_ALIAS
    from gptcli.paths import app_paths

    try:
        aliases = list(ModelRegistry(app_paths().data_dir).load())
    except Exception:  # completion must never print a traceback into the shell
        aliases = []
    return _matching([BUNDLED_ALIAS, *aliases, *catalogue()], incomplete)


def session_names(incomplete: str) -> list[str]:
    from gptcli.paths import app_paths
    from gptcli.store.sessions import NAME

    directory = app_paths().data_dir / "sessions"
    try:
        names = [p.name.removesuffix(".json") for p in directory.glob("*.json")]
    except OSError:
        names = []
    return _matching([n for n in names if NAME.match(n)], incomplete)


def role_names(incomplete: str) -> list[str]:
    from gptcli.conversation.roles import BUILTIN_ROLES, roles_dir
    from gptcli.paths import app_paths

    try:
        mine = [
            p.name.removesuffix(".toml") for p in roles_dir(app_paths().config_dir).glob("*.toml")
        ]
    except OSError:
        mine = []
    return _matching([*BUILTIN_ROLES, *mine], incomplete)


def tool_names(incomplete: str) -> list[str]:
    from gptcli.config import load_tool_settings
    from gptcli.paths import app_paths
    from gptcli.tools.box import BUILT_INS

    try:
        servers = [
            f"mcp:{name}" for name in load_tool_settings(app_paths().config_file).mcp_servers
        ]
    except Exception:  # completion must never print a traceback into the shell
        servers = []
    return _matching([*BUILT_INS, *servers], incomplete)
