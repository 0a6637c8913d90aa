"""gptcli: a local-first terminal chatbot."""

from __future__ import annotations

from gptcli.version import __version__

__all__ = ["__version__", "main"]


def main() -> None:
    """The console script. Importing the CLI takes tens of milliseconds; a Ctrl-C
    then ends the process quietly with status 130, as it does later on."""
    import sys

    try:
        from gptcli.cli.app import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        sys.exit(130)
    cli_main()
