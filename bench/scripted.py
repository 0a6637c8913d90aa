"""A scripted conversation through `gptcli ask --session`: what each turn costs.

    .venv/bin/python bench/scripted.py [--turns 20] [--answer-tokens 48]

Holds two conversations turn by turn in a temporary GPTCLI_HOME, one `ask --session`
process per turn, alternating so that drift on a shared machine hits both: "kept" uses
the session's KV snapshot as `ask` leaves it; "reprocess" deletes the snapshot before
every turn, so the whole history is processed again (what `ask` did before it kept
one). Runs `python -m gptcli`, so PYTHONPATH chooses the sources measured. Prints the
wall time and time to first token of every turn, the totals, the snapshot's size on
disk and the time this engine takes to write it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

QUESTIONS = [
    "Tell me one fact about the sea.",
    "Name a famous painter.",
    "What is a good breakfast?",
    "Give me a word that rhymes with cat.",
    "Name a planet.",
]
MODES = ("kept", "reprocess")


def ask(env: dict[str, str], session: str, question: str, tokens: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "gptcli", "ask", "--session", session, "--json"]
    command += ["-t", "0", "-n", str(tokens), question]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, check=True)
    wall = time.perf_counter() - start
    result = json.loads(done.stdout)
    return {
        "wall_s": round(wall, 3),
        "ttft_s": result["timings"]["time_to_first_token_s"],
        "prompt_tokens": result["usage"]["prompt_tokens"],
        "cached_prompt_tokens": result["timings"]["cached_prompt_tokens"],
        "text": result["text"],
    }


def write_time(snapshot: Path) -> dict[str, float] | None:
    """Restore the snapshot into a fresh engine and time writing it again, as `ask` does."""
    from gptcli.engine.llama import LlamaBackend, LoadOptions
    from gptcli.models.resolve import bundled_model_path
    from gptcli.store.snapshot import load_snapshot, save_snapshot

    header = snapshot.read_bytes().split(b"\n", 2)[1]
    key = json.loads(header)["key"]
    engine = LlamaBackend(LoadOptions(bundled_model_path(), ctx=int(key["n_ctx"])))
    try:
        if not load_snapshot(snapshot, engine, str(key["model_sha256"])):
            return None
        times = []
        for _ in range(3):
            start = time.perf_counter()
            save_snapshot(snapshot.with_suffix(".copy"), engine, str(key["model_sha256"]))
            times.append(time.perf_counter() - start)
        return {"write_s": round(sorted(times)[1], 3)}
    finally:
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--answer-tokens", type=int, default=48)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="gptcli-scripted-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPTCLI_")}
    env["GPTCLI_HOME"] = str(home)
    subprocess.run(  # the one-time CPU check, outside the measurement
        [sys.executable, "-m", "gptcli", "ask", "-n", "1", "Hi"], env=env, capture_output=True
    )
    sessions = home / "data" / "sessions"
    turns: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    sizes = []
    for turn in range(args.turns):
        question = QUESTIONS[turn % len(QUESTIONS)]
        for mode in MODES if turn % 2 == 0 else reversed(MODES):
            if mode == "reprocess":
                (sessions / f"{mode}.kv").unlink(missing_ok=True)
            turns[mode].append(ask(env, mode, question, args.answer_tokens))
        kept = sessions / "kept.kv"
        sizes.append(kept.stat().st_size if kept.exists() else 0)
    summary: dict[str, Any] = {"turns": args.turns}
    for mode, rows in turns.items():
        summary[mode] = {
            "total_wall_s": round(sum(r["wall_s"] for r in rows), 2),
            "last_turn_wall_s": rows[-1]["wall_s"],
            "last_turn_ttft_s": rows[-1]["ttft_s"],
            "last_turn_prompt_tokens": rows[-1]["prompt_tokens"],
            "last_turn_cached_tokens": rows[-1]["cached_prompt_tokens"],
        }
    summary["same_answers"] = [r["text"] for r in turns["kept"]] == [
        r["text"] for r in turns["reprocess"]
    ]
    summary["snapshot_bytes_last_turn"] = sizes[-1]
    summary["snapshot_bytes_per_turn"] = round(sizes[-1] / args.turns) if sizes[-1] else 0
    if sizes[-1]:
        summary.update(write_time(sessions / "kept.kv") or {})
    summary["per_turn"] = {
        mode: [(r["wall_s"], r["ttft_s"], r["cached_prompt_tokens"]) for r in rows]
        for mode, rows in turns.items()
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
