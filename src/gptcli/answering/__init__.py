"""Running a request end to end: settings, backend, session, fit, answer, record, state.

Every front end (``ask``, the chat, ``batch``, ``cmd``, ``--chunked``) goes through
here. What the use cases need from the world and from a person (streams, terminal
facts, the data dirs, a clock, signals, notes, tool approval) comes in through an
:class:`~gptcli.answering.environment.Environment`; what they produce goes out as
typed events to a display the front end passes in.
"""
