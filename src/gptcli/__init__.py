"""gptcli: a local-first terminal chatbot."""

__version__ = "0.1.0"
