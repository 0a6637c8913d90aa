"""Tools a model may call: built-in ones, a Python file's functions and MCP servers' tools."""
