"""`gptcli doctor`: check the installation and say what is wrong."""

from __future__ import annotations

import json
import os
import sys

import typer

from gptcli.cli.options import JsonOpt, MmprojOpt
from gptcli.errors import ExitStatus
from gptcli.paths import app_paths


def doctor(
    mmproj: MmprojOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Check the installation: versions, CPU and GPU support, directories, default model."""
    from gptcli.config import EngineOptions, load_settings
    from gptcli.errors import GptcliError
    from gptcli.models.doctor import run_checks

    paths = app_paths()
    engine = EngineOptions()
    try:
        settings = load_settings(paths.config_file, {"mmproj": mmproj})
        model, engine = settings.model, settings.engine
    except GptcliError:
        model = os.environ.get("GPTCLI_MODEL") or "smollm2"
        engine = EngineOptions(mmproj=mmproj)
    checks = run_checks(paths, model, engine)
    if json_output:
        typer.echo(json.dumps([c.__dict__ for c in checks], indent=1))
    else:
        width = max(len(c.name) for c in checks)
        for check in checks:
            mark = "ok " if check.ok else "BAD"
            typer.echo(f"{mark} {check.name:<{width}}  {check.detail}")
    if not all(c.ok for c in checks):
        sys.stderr.write("gptcli: doctor found problems (marked BAD)\n")
        raise typer.Exit(int(ExitStatus.ERROR))
