"""LineBatch: records as one text split by offsets, never by LF (a string field may hold one)."""

from __future__ import annotations

from collector.historian.linebatch import LineBatch

LINES = ['note,machine=m1 text="two\nlines" 1', "sample,machine=m2 value=1.5 2",
         'note,machine=m3 text="Grüße ✓" 3', "sample,machine=m1 value=2i 4"]


def test_text_is_every_line_followed_by_a_lf() -> None:
    batch = LineBatch.of(LINES)
    assert batch.text == "".join(f"{line}\n" for line in LINES)
    assert len(batch) == 4
    assert list(batch.lines()) == LINES
    assert [batch.line(i) for i in range(4)] == LINES


def test_split_and_join_give_back_the_same_records() -> None:
    batch = LineBatch.of(LINES)
    for at in range(5):
        head, tail = batch.split(at)
        assert list(head.lines()) == LINES[:at] and list(tail.lines()) == LINES[at:]
        assert head.text + tail.text == batch.text
        joined = LineBatch.join([head, tail])
        assert (joined.text, list(joined.ends)) == (batch.text, list(batch.ends))


def test_an_empty_batch_and_extend() -> None:
    batch = LineBatch()
    assert (batch.text, len(batch), list(batch.lines())) == ("", 0, [])
    batch.extend(LINES[:2])
    batch.extend(LINES[2:])
    assert list(batch.lines()) == LINES
    assert LineBatch.join([LineBatch(), batch, LineBatch()]).text == batch.text
