"""Backends that turn messages into typed events: llama.cpp in-process, a remote server."""
