"""The interactive REPL: prompt-toolkit input, streamed Markdown answers, slash commands."""
