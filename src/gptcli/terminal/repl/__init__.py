"""The interactive chat on a terminal (prompt-toolkit)."""
