"""`cmd`: a request in words becomes one shell command; a command becomes an explanation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gptcli.answering.attaching import check_media, for_model, read_attachments
from gptcli.answering.environment import Environment
from gptcli.answering.inputs import compose_prompt
from gptcli.answering.settings import build_settings
from gptcli.attachments.attached import Attached
from gptcli.config import SamplingOptions, Settings
from gptcli.conversation.chat import Conversation
from gptcli.conversation.context import complete, fit_conversation
from gptcli.conversation.shellcmd import clean_command, detect_shell, os_description
from gptcli.engine.base import Cancellation, Message
from gptcli.errors import ContextOverflowError, UsageError

DESCRIBE = SamplingOptions(temperature=0.2, max_tokens=200)


def suggest_command(
    request: str,
    flags: Mapping[str, str | None],
    env: Environment,
    attachments: Sequence[str] = (),
) -> str:
    """One command for ``request``, in the user's shell, for this system (the shell role);
    ``flags`` are the settings given (model, mmproj, pdf_pages); ``attachments`` (-a) are
    read first and given before the request (an image or sound needs a model that takes
    it: exit 2 otherwise, before anything is sent)."""
    if not request.strip():
        raise UsageError("the request is empty: say what the command should do")
    attached = read_attachments(attachments, env)
    shell, _ = detect_shell()
    variables = (f"shell={shell}", f"os={os_description()}")
    settings = build_settings(env.paths, flags, "shell", variables)
    messages = [Message("system", settings.system or ""), Message("user", request)]
    command = clean_command(_complete(settings, messages, settings.sampling, env, attached))
    if not command:
        raise UsageError("the model gave no command; try rephrasing the request")
    return command


def describe_command(command: str, model: str | None, env: Environment) -> str:
    """What ``command`` does, briefly, in the model's words."""
    settings = build_settings(env.paths, {"model": model})
    question = f"Explain briefly what this shell command does:\n\n{command}"
    return _complete(settings, [Message("user", question)], DESCRIBE, env)


def _complete(
    settings: Settings,
    messages: list[Message],
    options: SamplingOptions,
    env: Environment,
    attached: Sequence[Attached] = (),
) -> str:
    from gptcli.models.loader import open_backend

    cancel = Cancellation()
    with env.cancelling(cancel):
        backend, _ = open_backend(settings, env.paths, cancel, env.debug, report=env.pull_report())
        try:
            if attached:  # before the last message, as the model takes them
                attached = for_model(attached, backend, settings.pdf_pages, env.note)
                for item in attached:
                    check_media(item, backend)
                head = "\n\n".join(item.block() for item in attached)
                last = compose_prompt(messages[-1].content, head)
                messages = [*messages[:-1], Message("user", last)]
            # Too long for the window: refused (exit 4) rather than cut.
            conversation = Conversation(system=messages[0].content if len(messages) > 1 else None)
            try:
                fit_conversation(
                    conversation, messages[-1].content, backend, "error", options, cancel
                )
            except ContextOverflowError as exc:  # cmd has no --ctx, --chunked or --on-overflow
                reason = exc.message.rsplit(" (try ", 1)[0]
                raise ContextOverflowError(
                    f"{reason} (try a shorter request or smaller attachments)",
                    needed=exc.needed,
                    available=exc.available,
                ) from None
            return complete(backend, messages, options, cancel)
        finally:
            backend.close()
