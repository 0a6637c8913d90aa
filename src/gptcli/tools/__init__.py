"""Tools the model may call: built-ins, a file's Python functions, MCP servers' tools.

Importing this package stays light: jsonschema, the MCP SDK and each tool's module are
imported when a Toolbox needs them.
"""

from gptcli.tools.base import Tool, ToolInfo, ToolOutput
from gptcli.tools.box import BUILT_INS, Toolbox, available_tools

__all__ = ["BUILT_INS", "Tool", "ToolInfo", "ToolOutput", "Toolbox", "available_tools"]
