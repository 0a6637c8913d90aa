"""The server-sent events parser against the whole text/event-stream format."""

from __future__ import annotations

from gptcli.engine.sse import ServerEvent, sse_events, stream_lines


def events(*chunks: str) -> list[ServerEvent]:
    return list(sse_events(chunks))


def test_one_event_per_blank_line_and_data_lines_joined() -> None:
    assert events('data: {"a":\ndata: 1}\n\ndata: two\n\n') == [
        ServerEvent('{"a":\n1}'),
        ServerEvent("two"),
    ]


def test_comments_retry_id_event_and_unknown_fields() -> None:
    body = ": keep-alive\nretry: 3000\nid: 7\nevent: delta\nfoo: bar\ndata:x\n\n"
    assert events(body) == [ServerEvent("x", "delta", "7", 3000)]
    assert events("retry: soon\ndata: y\n\n") == [ServerEvent("y")]  # not a number: ignored
    assert events("retry: ²\ndata: y\n\n") == [ServerEvent("y")]  # a digit, not ASCII


def test_line_ends_crlf_cr_and_lf_even_split_across_chunks() -> None:
    expected = [ServerEvent("a"), ServerEvent("b"), ServerEvent("c")]
    assert events("data: a\r\n\r\ndata: b\r\rdata: c\n\n") == expected
    assert events("data: a\r", "\n\r", "\ndata: b\n", "\ndata: c\r\r") == expected
    assert list(stream_lines(["x\r", "\ny"])) == ["x", "y"]


def test_only_one_space_after_the_colon_is_dropped_and_a_field_without_colon() -> None:
    assert events("data:  two spaces\n\n") == [ServerEvent(" two spaces")]
    assert events("data\ndata: x\n\n") == [ServerEvent("\nx")]


def test_an_event_cut_by_the_end_is_discarded_and_blank_lines_alone_are_none() -> None:
    assert events("\n\n: hi\n\ndata: whole\n\ndata: cut") == [ServerEvent("whole")]
