"""Turns, context budget and overflow policies, long documents, structured output, roles."""
