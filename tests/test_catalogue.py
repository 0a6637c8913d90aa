"""Short names from the shipped catalogue, and projectors pulled with their models.

Every download goes to a local server speaking the hub's API (HF_ENDPOINT), and a
proxy that answers nothing stands in the way of any other address: a request that
left this machine would fail the test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gptcli.errors import ModelError
from gptcli.models.catalogue import ShortName, catalogue, families, parse_short_name
from gptcli.models.hub import choose_projector
from gptcli.models.names import HubRef, PullReport
from gptcli.models.registry import ModelRegistry
from gptcli.paths import app_paths
from tests.conftest import Gptcli
from tests.hubserver import HubServer, HubState

GEMMA = "ggml-org/gemma-3-4b-it-GGUF"
SMOL = "unsloth/SmolLM2-135M-Instruct-GGUF"
VISION = "test/vision-GGUF"


def tiny_gguf(path: Path, architecture: str, seed: int) -> Path:
    """A valid GGUF of a few hundred bytes; the seed makes each body (and its sha256) its own."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name(path.stem)
    writer.add_tensor("weights", np.full((4, 32), seed, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def hub(tmp_path: Path, bundled_model: Path) -> Iterator[HubServer]:
    files = tmp_path / "hub"
    files.mkdir()
    q4, q8, proj, proj8, proj32 = (
        tiny_gguf(files / f"{name}.gguf", arch, seed)
        for seed, (name, arch) in enumerate(
            [("q4", "gemma3"), ("q8", "gemma3"), ("f16", "clip"), ("p8", "clip"), ("p32", "clip")]
        )
    )
    state = HubState(
        repos={
            GEMMA: {
                "gemma-3-4b-it-Q4_K_M.gguf": q4,
                "gemma-3-4b-it-Q8_0.gguf": q8,
                "mmproj-model-f16.gguf": proj,
            },
            VISION: {
                "vis-Q4_K_M.gguf": q4,
                "mmproj-vis-f32.gguf": proj32,
                "mmproj-vis-Q8_0.gguf": proj8,
                "mmproj-vis-f16.gguf": proj,
            },
            SMOL: {"SmolLM2-135M-Instruct-Q8_0.gguf": bundled_model},
        }
    )
    server = HubServer(state)
    yield server
    server.close()


def hub_env(hub: HubServer) -> dict[str, str]:
    """The fake hub, and a dead proxy for every other address."""
    dead = "http://127.0.0.1:9"
    return {
        "HF_ENDPOINT": hub.url,
        "HTTPS_PROXY": dead,
        "HTTP_PROXY": dead,
        "ALL_PROXY": dead,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def downloads(state: HubState) -> list[str]:
    """The files fetched (GET), as ``repo/file``."""
    return [
        path.lstrip("/").replace("/resolve/main/", "/")
        for method, path, _ in state.requests
        if method == "GET" and "/resolve/" in path
    ]


def test_short_names_resolve_like_ollama_tags() -> None:
    assert parse_short_name("qwen3:4b") == ShortName(catalogue()["qwen3:4b"])
    assert parse_short_name("qwen3") == ShortName(catalogue()["qwen3:4b"])
    assert parse_short_name("Qwen3:latest") == ShortName(catalogue()["qwen3:4b"])
    assert parse_short_name("gemma3") == ShortName(catalogue()["gemma3:4b"])
    q8 = parse_short_name("qwen3:4b-q8_0")
    assert q8 == ShortName(catalogue()["qwen3:4b"], "Q8_0")
    assert q8.ref == HubRef("unsloth/Qwen3-4B-GGUF", "Q8_0")
    assert str(q8) == "qwen3:4b-q8_0"
    gemma = parse_short_name("gemma3:4b")
    assert gemma is not None
    assert gemma.ref == HubRef(GEMMA, "gemma-3-4b-it-Q4_K_M.gguf")
    assert gemma.model.projector == "mmproj-model-f16.gguf"
    for other in ("owner/repo", "owner/repo:Q4_K_M", "./x.gguf", "model.gguf", "mine", ""):
        assert parse_short_name(other) is None, other
    with pytest.raises(ModelError, match=r"qwen3 comes in 0\.6b, 1\.7b, 4b, 8b"):
        parse_short_name("qwen3:5b")
    with pytest.raises(ModelError, match="did you mean qwen3:4b"):
        parse_short_name("qwen3:4bb")
    with pytest.raises(ModelError, match="comes in"):
        parse_short_name("qwen3:4b-nonsense")


def test_the_catalogue_is_consistent() -> None:
    names = set(catalogue())
    for wanted in ("qwen3:1.7b", "gemma3:4b", "llama3.2:3b", "gpt-oss:20b", "smolvlm:500m"):
        assert wanted in names
    for family, members in families().items():
        assert sum(m.default for m in members) == 1, family
    for model in catalogue().values():
        assert re.fullmatch(r"[\w.-]+/[\w.-]+-GGUF", model.repo), model.name
        assert re.search(r"-(Q4_K_M|Q8_0)\.gguf$", model.file), model.name
        assert model.size_mb, model.name
        vision = "vision" in model.takes
        assert (model.projector is not None) == vision, model.name
        if model.projector:
            assert model.projector.startswith("mmproj") and model.projector_mb, model.name
            assert re.search(r"(?i)[-_.]f16\.gguf$", model.projector), model.name


def test_choose_projector() -> None:
    files = ["m-Q4_K_M.gguf", "mmproj-m-f32.gguf", "mmproj-m-bf16.gguf", "mmproj-m-f16.gguf"]
    assert choose_projector(files) == "mmproj-m-f16.gguf"
    assert choose_projector(files, "mmproj-m-f32.gguf") == "mmproj-m-f32.gguf"
    assert choose_projector(files, "gone.gguf") == "mmproj-m-f16.gguf"  # the repo moved on
    assert choose_projector(files[:3]) == "mmproj-m-bf16.gguf"
    assert choose_projector(["mmproj-q8_0.gguf", "m.gguf"]) == "mmproj-q8_0.gguf"
    assert choose_projector(["m.gguf", "README.md"]) is None


def test_a_registry_written_before_projectors_still_loads(private_home: Path) -> None:
    paths = app_paths()
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    models = {
        "old": {"path": "/m.gguf", "downloaded": True, "added": 1.0},
        "junk": {"path": "/n.gguf", "projector": 7},
    }
    (paths.data_dir / "models.json").write_text(json.dumps({"schema": 1, "models": models}))
    entries = ModelRegistry(paths.data_dir).load()
    assert entries["old"].projector is None and entries["old"].projector_path is None
    assert entries["junk"].projector is None


def test_pull_by_short_name_fetches_the_projector(fresh_gptcli: Gptcli, hub: HubServer) -> None:
    gptcli, env = fresh_gptcli, hub_env(hub)
    pulled = gptcli("models", "pull", "gemma3:4b", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert downloads(hub.state) == [
        f"{GEMMA}/gemma-3-4b-it-Q4_K_M.gguf",
        f"{GEMMA}/mmproj-model-f16.gguf",
    ]
    assert "%" not in pulled.stderr  # no progress bar into a pipe
    info = json.loads(gptcli("models", "info", "gemma3:4b", "--json").stdout)
    projector = Path(info["projector"])
    assert projector.name == "mmproj-model-f16.gguf" and projector.is_file()
    assert projector.parent == Path(info["file"]).parent
    assert projector.stat().st_mode & 0o777 == 0o600
    shown = gptcli("models", "info", "gemma3:4b").stdout
    assert re.search(rf"^projector +{re.escape(str(projector))} *$", shown, re.MULTILINE)
    available = gptcli("models", "list", "--available").stdout.splitlines()
    row = next(line for line in available if line.startswith("gemma3:4b"))
    assert "text, vision" in row and "gemma-3-4b-it-q4_k_m" in row
    listed = json.loads(gptcli("models", "list", "--available", "--json").stdout)
    smol = next(r for r in listed if r["name"] == "smollm2:135m")
    assert smol["downloaded"] == [] and smol["projector"] is None

    # A second quantisation shares the projector; it goes with the last model that uses it.
    q8 = gptcli("models", "pull", "gemma3:4b-q8_0", env=env)
    assert q8.returncode == 0, q8.stderr
    assert downloads(hub.state)[-1] == f"{GEMMA}/gemma-3-4b-it-Q8_0.gguf"  # projector: already here
    first = gptcli("models", "rm", "gemma3:4b")
    assert first.returncode == 0, first.stderr
    assert "kept its projector" in first.stdout and projector.is_file()
    last = gptcli("models", "rm", "gemma3:4b-q8_0")
    assert last.returncode == 0, last.stderr
    assert "deleted its projector" in last.stdout and not projector.exists()
    assert json.loads(gptcli("models", "list", "--json").stdout)[1:] == []


def test_pull_picks_the_f16_projector_of_a_repository(fresh_gptcli: Gptcli, hub: HubServer) -> None:
    gptcli, env = fresh_gptcli, hub_env(hub)
    bare = gptcli("models", "pull", VISION, "--no-projector", "--alias", "bare", env=env)
    assert bare.returncode == 0, bare.stderr
    assert downloads(hub.state) == [f"{VISION}/vis-Q4_K_M.gguf"]
    pulled = gptcli("models", "pull", VISION, "--alias", "vis", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.splitlines()[1].endswith("/mmproj-vis-f16.gguf")
    assert downloads(hub.state)[-1] == f"{VISION}/mmproj-vis-f16.gguf"
    entries = ModelRegistry(app_paths().data_dir).load()
    assert entries["bare"].projector is None
    assert entries["vis"].projector_path is not None
    assert entries["vis"].projector_path.name == "mmproj-vis-f16.gguf"


def test_a_model_pulled_without_its_projector_gets_it_on_next_use(
    fresh_gptcli: Gptcli, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gptcli.models.resolve import resolve_model

    env = hub_env(hub)
    assert fresh_gptcli("models", "pull", "gemma3:4b", "--no-projector", env=env).returncode == 0
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notes: list[str] = []
    path = resolve_model("gemma3", app_paths(), report=PullReport(notes.append))
    assert path.name == "gemma-3-4b-it-Q4_K_M.gguf"
    assert downloads(hub.state)[-1] == f"{GEMMA}/mmproj-model-f16.gguf"
    entry = ModelRegistry(app_paths().data_dir).entry_for(path)
    assert entry is not None and entry.projector_path is not None
    assert entry.projector_path.is_file()
    assert notes == []  # nothing to announce: the model was here


def test_a_typo_gets_a_suggestion_and_fetches_nothing(fresh_gptcli: Gptcli, hub: HubServer) -> None:
    env = hub_env(hub)
    for typed, line in [
        ("gemma:4b", "gptcli: error: unknown model 'gemma:4b'; did you mean gemma3:4b?"),
        ("qwen3:5b", "gptcli: error: unknown model 'qwen3:5b': qwen3 comes in 0.6b, 1.7b"),
    ]:
        result = fresh_gptcli("ask", "-m", typed, "hello", env=env)
        assert result.returncode == 3, result.stderr
        assert result.stderr.startswith(line), result.stderr
        assert len(result.stderr.splitlines()) == 1
    pulled = fresh_gptcli("models", "pull", "gemma:4b", env=env)
    assert pulled.returncode == 2
    assert "did you mean gemma3:4b?" in pulled.stderr
    assert hub.state.requests == []
    assert not (fresh_gptcli.home / "data" / "models").exists()


@pytest.mark.slow
def test_a_short_name_is_pulled_on_first_use(gptcli: Gptcli, hub: HubServer) -> None:
    env = hub_env(hub)
    question = "Name the capital city of France."
    first = gptcli("ask", "-m", "smollm2:135m", "-t", "0", "-n", "30", question, env=env)
    assert first.returncode == 0, first.stderr
    assert "Paris" in first.stdout
    notes = [line for line in first.stderr.splitlines() if "not downloaded yet" in line]
    assert notes == [
        "gptcli: note: smollm2:135m is not downloaded yet: fetching "
        f"SmolLM2-135M-Instruct-Q8_0.gguf from {SMOL}, about 0.1 GB"
    ]
    assert "%" not in first.stderr
    assert downloads(hub.state) == [f"{SMOL}/SmolLM2-135M-Instruct-Q8_0.gguf"]
    again = gptcli("ask", "-m", "smollm2:135m", "-t", "0", "-n", "30", question, env=env)
    assert again.stdout == first.stdout
    assert "not downloaded" not in again.stderr
    assert len(downloads(hub.state)) == 1
