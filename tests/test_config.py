"""Settings precedence and broken config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptcli.config import Settings, load_config_file, resolve_settings
from gptcli.config.values import check_setting
from gptcli.errors import ConfigError
from gptcli.paths import app_paths
from tests.conftest import Gptcli


def test_defaults() -> None:
    settings = resolve_settings({}, {}, {})
    assert settings == Settings()
    assert settings.model == "smollm2"


def test_flags_beat_environment_beat_file() -> None:
    file = {"model": "file.gguf", "temperature": 0.1, "top_k": 5, "ctx": 1024}
    env = {"model": "env.gguf"}
    flags = {"model": None, "temperature": 0.9, "top_k": None, "ctx": None, "seed": 3}
    settings = resolve_settings(file, env, flags)
    assert settings.model == "env.gguf"
    assert settings.sampling.temperature == 0.9
    assert settings.sampling.top_k == 5
    assert settings.sampling.seed == 3
    assert settings.engine.ctx == 1024
    assert resolve_settings(file, env, {"model": "flag.gguf"}).model == "flag.gguf"
    assert resolve_settings(file, {}, {}).model == "file.gguf"


def test_threads_from_the_environment_sit_between_the_file_and_the_flags() -> None:
    from gptcli.config import env_overrides

    env = env_overrides({"GPTCLI_THREADS": " 1 ", "GPTCLI_MODEL": ""})
    assert env == {"threads": 1}
    assert resolve_settings({"threads": 4}, env, {}).engine.threads == 1
    assert resolve_settings({"threads": 4}, env, {"threads": 2}).engine.threads == 2
    with pytest.raises(ConfigError, match=r"^GPTCLI_THREADS must be an integer$"):
        resolve_settings({}, env_overrides({"GPTCLI_THREADS": "many"}), {})
    with pytest.raises(ConfigError, match=r"^GPTCLI_THREADS must be >= 1$"):
        resolve_settings({}, env_overrides({"GPTCLI_THREADS": "0"}), {})


def test_thread_count_is_bounded_by_llama_cpps_thread_pool() -> None:
    from gptcli.config import env_overrides

    assert resolve_settings({"threads": 512}, {}, {}).engine.threads == 512
    with pytest.raises(ConfigError, match=r"^--threads must be <= 512$"):
        resolve_settings({}, {}, {"threads": 99999})
    with pytest.raises(ConfigError, match=r"^GPTCLI_THREADS must be <= 512$"):
        resolve_settings({}, env_overrides({"GPTCLI_THREADS": "513"}), {})
    with pytest.raises(ConfigError, match=r"^config threads must be <= 512$"):
        resolve_settings({"threads": 100000}, {}, {})
    with pytest.raises(ValueError, match=r"^must be <= 512$"):
        check_setting("threads", "1000")


@pytest.mark.parametrize(
    ("value", "problem"),
    [("²", "must be an integer"), ("1.5", "must be an integer"), ("-1", "must be >= 1")],
)
def test_gptcli_threads_errors_name_the_variable_and_the_problem(value: str, problem: str) -> None:
    from gptcli.config import env_overrides

    with pytest.raises(ConfigError, match=rf"^GPTCLI_THREADS {problem}$"):
        resolve_settings({}, env_overrides({"GPTCLI_THREADS": value}), {})


def test_bad_thread_counts_end_to_end(gptcli: Gptcli) -> None:
    for env, args, line in (
        ({}, ("--threads", "99999"), "--threads must be <= 512"),
        ({"GPTCLI_THREADS": "99999"}, (), "GPTCLI_THREADS must be <= 512"),
        ({"GPTCLI_THREADS": "²"}, (), "GPTCLI_THREADS must be an integer"),
        ({"GPTCLI_THREADS": "-1"}, (), "GPTCLI_THREADS must be >= 1"),
    ):
        result = gptcli("ask", "-n", "4", *args, "hi", env=env, timeout=60)
        assert (result.returncode, result.stderr) == (2, f"gptcli: error: {line}\n"), env


def test_doctor_reports_a_bad_thread_count(gptcli: Gptcli) -> None:
    config = gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("threads = 100000\n")
    from_file = gptcli("doctor")
    assert from_file.returncode == 1
    assert "threads must be <= 512" in from_file.stdout
    config.unlink()
    from_env = gptcli("doctor", env={"GPTCLI_THREADS": "²"})
    assert from_env.returncode == 1
    assert "GPTCLI_THREADS must be an integer" in from_env.stdout
    assert "Traceback" not in from_env.stderr + from_env.stdout


def test_invalid_flag_values_are_named() -> None:
    with pytest.raises(ConfigError, match="--min-p must be between 0 and 1"):
        resolve_settings({}, {}, {"min_p": 2.0})
    with pytest.raises(ConfigError, match="--ctx must be >= 16"):
        resolve_settings({}, {}, {"ctx": 1})


def test_gptcli_home_moves_every_directory(tmp_path: Path) -> None:
    paths = app_paths({"GPTCLI_HOME": str(tmp_path)})
    assert paths.config_file == tmp_path / "config" / "config.toml"
    assert paths.data_dir == tmp_path / "data"
    assert paths.cache_dir == tmp_path / "cache"


def test_config_file_values(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('model = "x.gguf"\ntemperature = 0\nstop = "###"\nctx = 2048\n')
    assert load_config_file(path) == {
        "model": "x.gguf",
        "temperature": 0.0,
        "stop": ("###",),
        "ctx": 2048,
    }
    assert load_config_file(tmp_path / "missing.toml") == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('model = "a"\ntemperature = = 1\n', "line 2"),
        ('model = "a"\n\ntemperature = "hot"\n', "line 3: temperature must be a number"),
        ("colour = 1\n", "line 1: unknown setting 'colour'"),
        ("top_p = 7\n", "top_p must be between 0 and 1"),
        ("threads = 0\n", "threads must be >= 1"),
    ],
)
def test_broken_config_names_file_and_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert str(path) in caught.value.message
    assert fragment in caught.value.message


@pytest.mark.slow
def test_broken_config_end_to_end(gptcli: Gptcli) -> None:
    config = gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("temperature = 0.5\nmodel = [\n")
    result = gptcli("ask", "hello")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert str(config) in result.stderr
    assert "line 2" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_config_file_sets_defaults_end_to_end(gptcli: Gptcli, tmp_path: Path) -> None:
    config = gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'model = "{tmp_path / "from-config.gguf"}"\n')
    result = gptcli("ask", "hello")
    assert result.returncode == 3
    assert "from-config.gguf" in result.stderr
    overridden = gptcli(
        "ask", "-m", "smollm2", "-t", "0", "-n", "30", "Who wrote Romeo and Juliet?"
    )
    assert overridden.returncode == 0
    assert "shakespeare" in overridden.stdout.lower()


def test_tool_settings_from_the_config_file(tmp_path: Path) -> None:
    from gptcli.config import McpServerSettings, ToolSettings, load_tool_settings

    path = tmp_path / "config.toml"
    path.write_text(
        'model = "x.gguf"\n'
        "[tools]\n"
        'enabled = ["time", "mcp:files"]\n'
        "timeout = 5\n"
        "max_result_chars = 2000\n"
        'roots = ["~/notes", "/srv/docs"]\n'
        "max_calls = 3\n"
        "[mcp.servers.files]\n"
        'command = "npx"\n'
        'args = ["-y", "server"]\n'
        'env = { DEBUG = "1" }\n'
        'cwd = "/tmp"\n'
        "[mcp.servers.docs]\n"
        'url = "https://mcp.example.com/mcp"\n'
        'headers_env = "DOCS_HEADERS"\n'
    )
    tools = load_tool_settings(path)
    assert tools == ToolSettings(
        enabled=("time", "mcp:files"),
        timeout=5.0,
        max_result_chars=2000,
        roots=(Path("~/notes").expanduser(), Path("/srv/docs")),
        max_calls=3,
        mcp_servers={
            "files": McpServerSettings("files", "npx", ("-y", "server"), {"DEBUG": "1"}, "/tmp"),
            "docs": McpServerSettings(
                "docs", url="https://mcp.example.com/mcp", headers_env="DOCS_HEADERS"
            ),
        },
    )
    assert resolve_settings(load_config_file(path), {}, {}).tools == tools
    assert resolve_settings({}, {}, {}).tools == ToolSettings()
    assert load_tool_settings(tmp_path / "missing.toml") == ToolSettings()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('timeout = 9\n[tools]\ncolour = "red"\n', "line 3: unknown setting 'colour' in [tools]"),
        ("timeout = 9\n[tools]\ntimeout = -1\n", "line 3: tools.timeout must be a number of"),
        ("[tools]\nenabled = 'time'\n", "line 2: tools.enabled must be a list of non-empty"),
        ("[tools]\nmax_result_chars = 10\n", "tools.max_result_chars must be >= 100"),
        ("[tools]\nmax_calls = 0\n", "tools.max_calls must be >= 1"),
        ("[tools]\nroots = [1]\n", "tools.roots must be a list of non-empty strings"),
        ("tools = 3\n", "tools must be a table [tools]"),
        ("[mcp]\nservers = 1\n", "mcp.servers must be a table of [mcp.servers.NAME] tables"),
        ("[mcp.other]\nx = 1\n", "unknown setting 'other' in [mcp]"),
        ("[mcp.servers.a]\nargs = []\n", "[mcp.servers.a] needs a command"),
        ('[mcp.servers.a]\ncommand = "x"\nport = 1\n', "line 3: unknown setting 'port'"),
        ('[mcp.servers.a]\ncommand = ""\n', "mcp.servers.a.command must not be empty"),
        ('[mcp.servers.a]\ncommand = "x"\nenv = { A = 1 }\n', "env must be a table of strings"),
        ('[mcp.servers."a b"]\ncommand = "x"\n', "MCP server name 'a b' must be 1-32"),
        ("[mcp.servers.a]\n", "[mcp.servers.a] needs a command (MCP over stdio) or a url"),
        (
            '[mcp.servers.a]\ncommand = "x"\nurl = "http://h/mcp"\n',
            "line 3: [mcp.servers.a] has both a command and a url: keep one",
        ),
        (
            '[mcp.servers.a]\nurl = "ftp://h/mcp"\n',
            "line 2: mcp.servers.a.url must be an http:// or https:// URL, not 'ftp://h/mcp'",
        ),
        ('[mcp.servers.a]\nurl = "https:///mcp"\n', "url must be an http:// or https:// URL"),
        ('[mcp.servers.a]\nurl = "localhost:8000/mcp"\n', "url must be an http:// or https://"),
        ('[mcp.servers.a]\nurl = "http://h:0/mcp"\n', "url must be an http:// or https:// URL"),
        (
            '[mcp.servers.a]\nurl = "http://h/mcp"\nargs = ["x"]\n',
            "line 3: args goes with a command, not a url, in [mcp.servers.a]",
        ),
        (
            '[mcp.servers.a]\ncommand = "x"\nheaders_env = "H"\n',
            "line 3: headers_env goes with a url, not a command",
        ),
        (
            '[mcp.servers.a]\nurl = "http://h/mcp"\nheaders_env = "Authorization: Bearer x"\n',
            "line 3: mcp.servers.a.headers_env must name an environment variable",
        ),
    ],
)
def test_broken_tool_settings_name_file_and_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert str(path) in caught.value.message
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("key", "typed", "value"),
    [("speculate", "ngram", "ngram"), ("speculate", "OFF", "off"), ("think", "on", "on"),
     ("top_k", "20", 20), ("temperature", "0", 0.0), ("seed", "none", None)],
)  # fmt: skip
def test_set_parses_each_value_as_its_kind(key: str, typed: str, value: object) -> None:
    assert check_setting(key, typed) == value


@pytest.mark.parametrize(
    ("key", "typed", "message"),
    [("speculate", "3", "must be auto, ngram, draft or off"), ("top_k", "many", "an integer")],
)
def test_set_refuses_a_value_of_another_kind(key: str, typed: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_setting(key, typed)
