"""Backends turn a conversation into a stream of typed events."""
