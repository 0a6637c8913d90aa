"""What a user attaches to a message: files, PDFs, folders and URLs, read as text.

The kind of a file is decided by its first bytes, never its name. Every reader has
caps (bytes, pages, files, seconds, see :mod:`gptcli.attachments.limits`) and says
in one line why it refuses; nothing here knows a terminal, a model or a session.
"""
