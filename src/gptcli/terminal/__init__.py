"""What a person sees: rendering, stdin, Ctrl-C, the one-shot front end and the REPL."""
