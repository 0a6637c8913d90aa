"""The ``gptcli`` command line: parse, build settings, call the core, map errors to exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from gptcli import __version__
from gptcli.completion_values import model_names, role_names, session_names
from gptcli.errors import ExitStatus, GptcliError, UsageError

EXIT_STATUS_HELP = (
    "Exit status: 0 ok; 1 error; 2 usage error or unusable input; 3 model not found or "
    "unusable; 4 input does not fit the context window; 5 the answer does not match --schema; "
    "6 a model server could not be reached or answered with an error; 130 interrupted "
    "(Ctrl-C); 141 stdout closed by its reader (e.g. | head)."
)

app = typer.Typer(
    name="gptcli",
    help="A local-first terminal chatbot: GGUF models run in-process through llama.cpp.",
    epilog=EXIT_STATUS_HELP,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Options shared by `ask` (and the REPL, later): declared once.
ModelOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional at runtime on 3.10
    typer.Option(
        "--model",
        "-m",
        help="Model alias, path to a .gguf file, or owner/repo[:QUANT] [env: GPTCLI_MODEL].",
        autocompletion=model_names,
    ),
]
SystemOpt = Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt.")]  # noqa: UP045
TemperatureOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option("--temperature", "-t", help="Sampling temperature (0 = always the likeliest)."),
]
TopPOpt = Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling mass.")]  # noqa: UP045
TopKOpt = Annotated[Optional[int], typer.Option("--top-k", help="Sample among the K likeliest.")]  # noqa: UP045
MinPOpt = Annotated[Optional[float], typer.Option("--min-p", help="Drop tokens below this share.")]  # noqa: UP045
RepeatOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option("--repeat-penalty", help="Penalty for repeating recent tokens (1 = off)."),
]
MaxTokensOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--max-tokens", "-n", help="Stop the answer after this many tokens."),
]
SeedOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--seed", help="Random seed; the same seed and options give the same text."),
]
StopOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--stop", help="Stop the answer at this text (repeatable)."),
]
CtxOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--ctx", help="Context window in tokens [default: model's, at most 4096]."),
]
ThreadsOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--threads", help="CPU threads [default: physical cores]."),
]
GpuLayersOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--gpu-layers",
        help="Layers to offload to the GPU: 'auto' (all layers when llama.cpp was built with "
        "CUDA or Metal, else none), 'all' (or -1), or a number; 0 keeps the model on the CPU "
        "[default: auto].",
        show_default=False,
    ),
]
ProfileOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--profile", "-p", help="Use a [profiles.NAME] table of the config file."),
]
BackendOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--backend", help="local (llama.cpp in this process) or openai (a server)."),
]
BaseUrlOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--base-url", help="An OpenAI-compatible server, e.g. http://host:8080/v1."),
]
ApiKeyEnvOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--api-key-env", help="Read the server's API key from this variable."),
]
RoleOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--role",
        "-r",
        help="Use a role: its system prompt and default options.",
        autocompletion=role_names,
    ),
]
VarOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--var", help="Fill a {placeholder} of the role: KEY=VALUE (repeatable)."),
]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show llama.cpp's log and tracebacks on errors.")
]


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            engine = version("llama-cpp-python")
        except PackageNotFoundError:
            engine = "not installed"
        typer.echo(f"gptcli {__version__} (llama-cpp-python {engine})")
        raise typer.Exit()


SETTING_FLAGS = (
    "model",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "max_tokens",
    "seed",
    "stop",
    "ctx",
    "threads",
    "gpu_layers",
    "profile",
    "backend",
    "base_url",
    "api_key_env",
)


def setting_flags(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The command-line layer of the settings (None = not given), picked from a command's
    arguments (``ask`` and ``chat`` pass their ``locals()``)."""
    given = {name: arguments[name] for name in SETTING_FLAGS}
    stop = given.get("stop")
    return {
        **given,
        "stop": tuple(stop) if stop else None,
        "backend": given.get("backend") or ("openai" if given.get("base_url") else None),
    }


@app.callback(invoke_without_command=True)
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Without a command: the REPL on a terminal, `ask` for pipes (see route)."""


@app.command(epilog=EXIT_STATUS_HELP)
def ask(
    prompt: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(
            help="The question or instruction. Piped stdin is placed before it, separated by "
            "a '---' line; '-' means stdin only.",
            show_default=False,
        ),
    ] = None,
    model: ModelOpt = None,
    system: SystemOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    top_k: TopKOpt = None,
    min_p: MinPOpt = None,
    repeat_penalty: RepeatOpt = None,
    max_tokens: MaxTokensOpt = None,
    seed: SeedOpt = None,
    stop: StopOpt = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    gpu_layers: GpuLayersOpt = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with text, usage and timings.")
    ] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="Print the exact text, no Markdown rendering.")
    ] = False,
    continue_last: Annotated[
        bool,
        typer.Option("--continue", "-c", help="Continue the most recent session and save to it."),
    ] = False,
    session: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--session",
            help="Continue this session (created if missing).",
            autocompletion=session_names,
        ),
    ] = None,
    on_overflow: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--on-overflow",
            help="When history and input do not fit the context: error (refuse, exit 4), "
            "truncate (drop the oldest exchanges) or summarize (replace them by a summary) "
            "[default: error].",
            show_default=False,
        ),
    ] = None,
    chunked: Annotated[
        bool,
        typer.Option(
            "--chunked",
            help="For input longer than the context: summarise it part by part, then apply "
            "the prompt to the whole (progress on stderr).",
        ),
    ] = False,
    files: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option("--file", "-f", help="Attach a text file (repeatable)."),
    ] = None,
    schema: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--schema",
            help="Constrain the answer to this JSON schema (a file or inline JSON); the answer "
            "is validated, exit 5 if it does not conform.",
        ),
    ] = None,
    grammar: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--grammar", help="Constrain the answer with a GBNF grammar (file or text)."),
    ] = None,
    profile: ProfileOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    role: RoleOpt = None,
    var: VarOpt = None,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl", help="Stream JSON events, one per line: start, delta..., usage, end."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Nothing on stderr but errors.")
    ] = False,
    ignore_eos: Annotated[
        bool,
        typer.Option("--ignore-eos", help="Generate past the end of the answer (benchmarks)."),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Answer one prompt and exit. Reads stdin when it is not a terminal."""
    from gptcli.oneshot import OneShot, run_oneshot

    flags = setting_flags(locals())
    request = OneShot(
        prompt=prompt,
        flags=flags,
        json_output=json_output,
        plain=plain,
        debug=debug,
        session=session,
        continue_last=continue_last,
        on_overflow=on_overflow,
        chunked=chunked,
        files=tuple(files or ()),
        schema=schema,
        grammar=grammar,
        role=role,
        variables=tuple(var or ()),
        jsonl=jsonl,
        quiet=quiet,
        ignore_eos=ignore_eos,
    )
    status = run_oneshot(request)
    if status != ExitStatus.OK:
        raise typer.Exit(int(status))


@app.command(epilog=EXIT_STATUS_HELP)
def chat(
    model: ModelOpt = None,
    system: SystemOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    top_k: TopKOpt = None,
    min_p: MinPOpt = None,
    repeat_penalty: RepeatOpt = None,
    max_tokens: MaxTokensOpt = None,
    seed: SeedOpt = None,
    stop: StopOpt = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    gpu_layers: GpuLayersOpt = None,
    plain: Annotated[
        bool, typer.Option("--plain", help="Print answers as exact text, no Markdown.")
    ] = False,
    no_history: Annotated[
        bool,
        typer.Option(
            "--no-history", help="Keep no input history on disk [env: GPTCLI_NO_HISTORY=1]."
        ),
    ] = False,
    resume: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--resume", help="Resume the session with this name.", autocompletion=session_names
        ),
    ] = None,
    continue_last: Annotated[
        bool, typer.Option("--continue", "-c", help="Resume the most recent session.")
    ] = False,
    no_save: Annotated[
        bool, typer.Option("--no-save", help="Incognito: save nothing of this conversation.")
    ] = False,
    profile: ProfileOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    role: RoleOpt = None,
    var: VarOpt = None,
    ignore_eos: Annotated[
        bool,
        typer.Option("--ignore-eos", help="Generate past the end of answers (benchmarks)."),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Chat interactively (the default on a terminal). /help inside lists the commands."""
    from gptcli.config import load_settings
    from gptcli.inputs import stdin_is_interactive
    from gptcli.paths import app_paths
    from gptcli.repl.app import ReplOptions, run_repl

    if not stdin_is_interactive(0) or not stdin_is_interactive(1):
        raise UsageError("chat needs a terminal; use gptcli ask for pipes and scripts")
    flags = setting_flags(locals())
    from gptcli.roles import role_layer

    paths = app_paths()
    settings = load_settings(paths.config_file, flags, role_layer(paths.config_dir, role, var))
    if ignore_eos:
        settings = replace(settings, sampling=replace(settings.sampling, ignore_eos=True))
    history = settings.history and not no_history and os.environ.get("GPTCLI_NO_HISTORY") != "1"
    options = ReplOptions(
        history=history and not no_save,
        save=settings.save and not no_save,
        resume=resume,
        continue_last=continue_last,
        plain=plain or bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb",
        vi_mode=settings.vi_mode,
        debug=debug,
    )
    status = run_repl(settings, paths, options)
    if status:
        raise typer.Exit(status)


def _register_subcommands() -> None:
    from gptcli.cli_extra import cmd, completions_app, roles_app
    from gptcli.cli_models import doctor, models_app
    from gptcli.cli_sessions import sessions_app

    app.add_typer(models_app, name="models")
    app.add_typer(sessions_app, name="sessions")
    app.add_typer(roles_app, name="roles")
    app.add_typer(completions_app, name="completions")
    app.command()(cmd)
    app.command(epilog=EXIT_STATUS_HELP)(doctor)


_register_subcommands()
COMMANDS = ("ask", "chat", "models", "sessions", "roles", "cmd", "completions", "doctor")


def route(argv: list[str], interactive: bool) -> list[str]:
    """Pick the command when none is named.

    ``gptcli`` alone or with options only starts the REPL on a terminal and acts
    like ``ask`` otherwise; ``gptcli "question"`` is ``gptcli ask "question"``.
    """
    if argv and argv[0] in (*COMMANDS, "-h", "--help", "--version"):
        return argv
    if not argv or (argv[0].startswith("-") and argv[0] != "-"):
        return ["chat" if interactive else "ask", *argv]
    return ["ask", *argv]


def _silence_stdout() -> None:
    """After stdout failed, point it at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


@contextmanager
def _error_boundary(debug: bool) -> Iterator[list[int]]:
    from gptcli.render import OutputClosed

    result = [0]
    try:
        yield result
    except GptcliError as exc:
        if debug:
            raise
        print(f"gptcli: error: {exc.message}", file=sys.stderr)
        result[0] = int(exc.exit_code)
    except OutputClosed:
        _silence_stdout()
        result[0] = int(ExitStatus.BROKEN_PIPE)
    except BrokenPipeError:
        _silence_stdout()
        result[0] = int(ExitStatus.BROKEN_PIPE)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        result[0] = int(ExitStatus.INTERRUPTED)
    except Exception as exc:
        if debug:
            raise
        print(
            f"gptcli: internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
            file=sys.stderr,
        )
        result[0] = int(ExitStatus.ERROR)


def run(argv: list[str]) -> int:
    """Run the CLI with ``argv``; returns the exit status instead of exiting."""
    debug = "--debug" in argv
    if os.environ.get("_GPTCLI_COMPLETE"):
        # A completion request from the scripts in completions/: Typer answers it.
        from typer._completion_classes import completion_init

        completion_init()
    with _error_boundary(debug) as result:
        try:
            from gptcli.inputs import stdin_is_interactive

            interactive = stdin_is_interactive(0) and stdin_is_interactive(1)
            outcome = typer.main.get_command(app).main(
                args=route(argv, interactive), prog_name="gptcli", standalone_mode=False
            )
            result[0] = outcome if isinstance(outcome, int) else 0
        except typer.Abort:
            raise KeyboardInterrupt from None
        except typer.TyperException as exc:  # usage errors, with their own message format
            show = getattr(exc, "show", None)
            if callable(show):
                show()
            else:
                print(f"gptcli: error: {exc.format_message()}", file=sys.stderr)
            result[0] = exc.exit_code
        except typer.Exit as exc:
            result[0] = exc.exit_code
    return result[0]


def _closed_standard_streams() -> int | None:
    """Started with ``>&-`` or ``2>&-``: Python then has no sys.stdout or sys.stderr.

    Without stdout nothing can be shown: one line on stderr, exit 1. Without
    stderr, messages go nowhere rather than into stdout, which scripts read.
    """
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the process
    if sys.stdout is None:
        sys.stderr.write("gptcli: error: standard output is closed; nothing could be shown\n")
        return int(ExitStatus.ERROR)
    return None


def main() -> None:
    closed = _closed_standard_streams()
    if closed is not None:
        sys.exit(closed)
    status = run(sys.argv[1:])
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()
    sys.exit(status)
