"""`gptcli models …`, pulls from a local server speaking the hub's API, and `doctor`."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gptcli.errors import ModelError
from gptcli.models.hub import choose_file
from gptcli.models.names import HubRef, parse_hub_ref
from tests.conftest import Gptcli, gptcli_executable
from tests.hubserver import HubServer, HubState
from tests.terminal import Terminal
from tests.timing import patience

REPO = "test/smol-GGUF"
FRANCE = "Name the capital city of France."


@pytest.fixture
def hub(bundled_model: Path) -> Iterator[HubServer]:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    state = HubState(
        repos={
            REPO: {
                "smol.Q4_1.gguf": bundled_model,
                "smol.Q8_0.gguf": bundled_model,
                "README.md": readme,
            }
        }
    )
    server = HubServer(state)
    yield server
    server.close()


def file_gets(state: HubState) -> list[str | None]:
    return [rng for method, path, rng in state.requests if method == "GET" and "/resolve/" in path]


def test_parse_hub_references() -> None:
    assert parse_hub_ref("owner/repo") == HubRef("owner/repo")
    assert parse_hub_ref("owner/repo:Q4_K_M") == HubRef("owner/repo", "Q4_K_M")
    assert parse_hub_ref("hf.co/owner/repo:q8_0") == HubRef("owner/repo", "q8_0")
    assert parse_hub_ref("./models/x.gguf") is None
    assert parse_hub_ref("models/x.gguf") is None
    assert parse_hub_ref("/abs/path") is None


def test_choose_file() -> None:
    files = ["a.Q4_K_M.gguf", "a.Q8_0.gguf", "a-Q4_0.gguf", "mmproj-a.gguf", "x.md"]
    assert choose_file(files, HubRef("o/r")) == "a.Q4_K_M.gguf"
    assert choose_file(files, HubRef("o/r", "q8_0")) == "a.Q8_0.gguf"
    assert choose_file(files, HubRef("o/r", "Q4_0")) == "a-Q4_0.gguf"
    assert choose_file(files, HubRef("o/r", "a.Q8_0.gguf")) == "a.Q8_0.gguf"
    with pytest.raises(ModelError, match="no file for quantisation Q2_K"):
        choose_file(files, HubRef("o/r", "Q2_K"))
    with pytest.raises(ModelError, match="split into 3 files"):
        choose_file(["b-Q4_0-00002-of-00003.gguf"], HubRef("o/r", "Q4_0"))


@pytest.mark.slow
def test_pull_registers_and_the_model_answers(gptcli: Gptcli, hub: HubServer) -> None:
    env = {"HF_ENDPOINT": hub.url}
    pulled = gptcli("models", "pull", f"{REPO}:Q4_1", "--alias", "smol", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.startswith("smol: ")
    path = Path(pulled.stdout.split(": ", 1)[1].split(" (")[0])
    assert path.stat().st_mode & 0o777 == 0o600
    listed = json.loads(gptcli("models", "list", "--json").stdout)
    entry = next(e for e in listed if e["alias"] == "smol")
    assert entry["source"] == f"downloaded from {REPO}"
    assert entry["quantization"] == "Q4_1"
    answer = gptcli("ask", "-m", "smol", "-t", "0", "-n", "30", FRANCE)
    assert "Paris" in answer.stdout
    gets = len(file_gets(hub.state))
    by_ref = gptcli("ask", "-m", f"{REPO}:Q4_1", "-t", "0", "-n", "30", FRANCE, env=env)
    assert by_ref.stdout == answer.stdout
    assert len(file_gets(hub.state)) == gets  # already downloaded: not fetched again


@pytest.mark.slow
def test_pull_resumes_a_cut_transfer(gptcli: Gptcli, hub: HubServer) -> None:
    hub.state.cut_first_get_after = 20_000_000
    pulled = gptcli("models", "pull", f"{REPO}:Q4_1", env={"HF_ENDPOINT": hub.url})
    assert pulled.returncode == 0, pulled.stderr
    ranges = file_gets(hub.state)
    assert ranges[0] is None
    assert ranges[-1] is not None and int(ranges[-1][6:].split("-")[0]) > 0
    assert "b179c9523d0e6a0f98a3" in pulled.stdout


@pytest.mark.slow
def test_pull_resumes_after_the_process_is_killed(gptcli: Gptcli, hub: HubServer) -> None:
    hub.state.seconds_per_mib = 0.05
    child = subprocess.Popen(
        [gptcli_executable(), "models", "pull", f"{REPO}:Q4_1"],
        env={**gptcli.env, "HF_ENDPOINT": hub.url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partial_dir = gptcli.home / "data" / "models" / "test__smol-GGUF" / ".partial"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        partial = [p for p in partial_dir.glob("*.part") if p.stat().st_size > 5 << 20]
        if partial:
            break
        time.sleep(0.1)
    assert partial, "the download never started"
    child.send_signal(signal.SIGKILL)
    child.wait()
    hub.state.seconds_per_mib = 0.0
    pulled = gptcli("models", "pull", f"{REPO}:Q4_1", env={"HF_ENDPOINT": hub.url})
    assert pulled.returncode == 0, pulled.stderr
    resumed = file_gets(hub.state)[-1]
    assert resumed is not None and int(resumed[6:].split("-")[0]) >= 5 << 20


@pytest.mark.slow
def test_pull_rejects_a_hash_mismatch(gptcli: Gptcli, hub: HubServer) -> None:
    hub.state.lie_about_sha = True
    pulled = gptcli("models", "pull", f"{REPO}:Q4_1", env={"HF_ENDPOINT": hub.url})
    assert pulled.returncode == 3
    assert "does not match" in pulled.stderr
    assert json.loads(gptcli("models", "list", "--json").stdout)[1:] == []


def test_pull_offline_and_unreachable_fail_fast(gptcli: Gptcli) -> None:
    offline = gptcli("models", "pull", f"{REPO}:Q4_1", env={"HF_HUB_OFFLINE": "1"})
    assert offline.returncode == 3
    assert "HF_HUB_OFFLINE is set" in offline.stderr
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    away = gptcli("models", "pull", REPO, env={"HF_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert time.monotonic() - started < patience(10)
    assert away.returncode == 3
    assert away.stderr.startswith(f"gptcli: error: cannot reach http://127.0.0.1:{port}")
    assert away.stderr.count("\n") == 1


def test_pull_unknown_quant_lists_what_exists(gptcli: Gptcli, hub: HubServer) -> None:
    result = gptcli("models", "pull", f"{REPO}:Q2_K", env={"HF_ENDPOINT": hub.url})
    assert result.returncode == 3
    assert "smol.Q4_1.gguf, smol.Q8_0.gguf" in result.stderr


@pytest.mark.slow
def test_pull_shows_progress_on_a_terminal(gptcli: Gptcli, hub: HubServer) -> None:
    hub.state.seconds_per_mib = 0.01
    env = {**gptcli.env, "HF_ENDPOINT": hub.url, "TERM": "xterm"}
    term = Terminal([gptcli_executable(), "models", "pull", f"{REPO}:Q8_0"], env, cols=120)
    try:
        term.wait_for(lambda screen: "%" in screen and "smol.Q8_0.gguf" in screen, timeout=60)
        assert term.wait_exit(timeout=60) == 0
    finally:
        term.close()


def test_add_rm_default_and_info(gptcli: Gptcli, tmp_path: Path, bundled_model: Path) -> None:
    copy = tmp_path / "mine.gguf"
    copy.symlink_to(bundled_model)
    added = gptcli("models", "add", str(copy), "--alias", "mine")
    assert added.returncode == 0, added.stderr
    assert gptcli("models", "add", str(copy), "--alias", "../evil").returncode == 2
    assert gptcli("models", "add", str(tmp_path), "--alias", "dir").returncode == 3
    info = json.loads(gptcli("models", "info", "mine", "--json", "--sha").stdout)
    assert info["quantization"] == "Q4_1"
    assert info["architecture"] == "llama"
    assert info["trained_context"] == 8192
    assert info["chat_template"] is True
    assert info["tokenizer"] == "gpt2"
    assert info["sha256"].startswith("b179c9523d0e")
    default = gptcli("models", "default", "mine")
    assert default.returncode == 0, default.stderr
    config = (gptcli.home / "config" / "config.toml").read_text()
    assert 'model = "mine"' in config
    doctor = gptcli("doctor")
    assert "mine -> " in doctor.stdout
    removed = gptcli("models", "rm", "mine")
    assert removed.returncode == 0
    assert copy.exists()  # not downloaded by gptcli: the file stays
    assert gptcli("models", "rm", "mine").returncode == 2
    template = gptcli("models", "info", "smollm2", "--template")
    assert "<|im_start|>" in template.stdout
    # Into a pipe: names and values as a person reads them, no header, no trailing spaces.
    lines = gptcli("models", "info", "smollm2").stdout.splitlines()
    assert lines[0].startswith("file ") and all(line == line.rstrip() for line in lines)
    assert "trained_context  8,192" in lines and "chat_template    yes" in lines
    assert not {"True", "False", "None"} & {word for line in lines for word in line.split()}


def test_doctor_reports_and_fails_on_problems(gptcli: Gptcli) -> None:
    report = gptcli("doctor")
    assert report.returncode == 0, report.stdout + report.stderr
    for field in (
        "gptcli",
        "llama-cpp-python",
        "llama.cpp backends",
        "GPU offload",
        "CPU features",
        "CPU fallback",
        "data directory",
        "model sha256",
    ):
        assert any(line[4:].startswith(field) for line in report.stdout.splitlines()), field
    as_json = json.loads(gptcli("doctor", "--json").stdout)
    assert all(check["ok"] for check in as_json)
    config = gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("temperature = [\n")
    broken = gptcli("doctor")
    assert broken.returncode == 1
    assert any(line.startswith("BAD config") for line in broken.stdout.splitlines())
    missing = gptcli("doctor", env={"GPTCLI_MODEL": "/no/such.gguf"})
    assert missing.returncode == 1
    assert "BAD default model" in missing.stdout


def test_the_bundled_model_cannot_be_removed(gptcli: Gptcli) -> None:
    for name in ("smollm2", "SmolLM2"):
        result = gptcli("models", "rm", name)
        assert result.returncode == 2
        assert result.stderr == (
            f"gptcli: error: {name} is the bundled model and cannot be removed\n"
        )
    assert gptcli("models", "info", "smollm2").returncode == 0  # still there


@pytest.mark.slow
def test_info_resolves_a_hub_reference(gptcli: Gptcli, hub: HubServer) -> None:
    missing = gptcli("models", "info", f"{REPO}:Q4_1")
    assert missing.returncode == 3
    assert missing.stderr == (
        f"gptcli: error: {REPO}:Q4_1 is not downloaded (gptcli models pull {REPO}:Q4_1)\n"
    )
    assert gptcli("models", "default", f"{REPO}:Q4_1").returncode == 3
    pulled = gptcli("models", "pull", f"{REPO}:Q4_1", env={"HF_ENDPOINT": hub.url})
    assert pulled.returncode == 0, pulled.stderr
    path = pulled.stdout.split(": ", 1)[1].split(" (")[0]
    info = gptcli("models", "info", f"{REPO}:Q4_1", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["file"] == path
    assert json.loads(gptcli("models", "info", REPO, "--json").stdout)["file"] == path


def test_removing_the_default_model_warns_and_its_error_names_the_config_line(
    gptcli: Gptcli, tmp_path: Path, bundled_model: Path
) -> None:
    copy = tmp_path / "mine.gguf"
    copy.symlink_to(bundled_model)
    assert gptcli("models", "add", str(copy), "--alias", "mine").returncode == 0
    config = gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("temperature = 0.5\n")
    assert gptcli("models", "default", "mine").returncode == 0
    removed = gptcli("models", "rm", "mine")
    assert removed.returncode == 0
    assert removed.stderr == (
        f'gptcli: warning: mine is the default model (model = "mine" in {config}, line 1); '
        "until it is changed (gptcli models default NAME), commands that load a model "
        "will fail\n"
    )
    assert 'model = "mine"' in config.read_text()  # the config file stays the user's
    asked = gptcli("ask", "-n", "1", "hi")
    assert asked.returncode == 3
    assert asked.stderr.count("\n") == 1
    assert asked.stderr.endswith(
        f'(model = "mine" in {config}, line 1; gptcli models default NAME changes it)\n'
    )
    other = gptcli("models", "add", str(copy), "--alias", "other")
    assert other.returncode == 0
    assert gptcli("models", "rm", "other").stderr == ""  # not the default: nothing to say
    flagged = gptcli("ask", "-m", "nosuch", "-n", "1", "hi")
    assert flagged.returncode == 3 and "config" not in flagged.stderr  # the flag named it
    from_env = gptcli("ask", "-n", "1", "hi", env={"GPTCLI_MODEL": "nosuch"})
    assert from_env.returncode == 3 and from_env.stderr.endswith("(from GPTCLI_MODEL)\n")
