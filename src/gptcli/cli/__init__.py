"""The Typer commands: parse arguments, build settings, call down, map errors to exit codes."""
