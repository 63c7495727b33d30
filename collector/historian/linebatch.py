"""A batch of line-protocol records as one text: what the forwarder hands a store.

One `str` and one array of offsets instead of a `str` per record. The forwarder sends
5,000-20,000 records per request; as separate objects they were the largest regular peak
of small allocations in the process, and the new pymalloc pools of session 11's runs were
mostly of their two sizes. A text this size, and the array, are single blocks that the
allocator maps and unmaps whole.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


def _offsets() -> array[int]:
    return array("Q")


@dataclass(slots=True)
class LineBatch:
    """Records' lines, each followed by LF, in `text`; `ends[i]` is where record i's LF ends.

    A line may itself hold a LF (inside a string field), so the text is split by `ends`,
    never by LF."""

    text: str = ""
    ends: array[int] = field(default_factory=_offsets)

    @classmethod
    def of(cls, lines: Iterable[str]) -> LineBatch:
        batch = cls()
        batch.extend(lines)
        return batch

    def extend(self, lines: Iterable[str]) -> None:
        parts = [self.text]
        end = len(self.text)
        for line in lines:
            parts.append(line)
            parts.append("\n")
            end += len(line) + 1
            self.ends.append(end)
        self.text = "".join(parts)

    def __len__(self) -> int:
        return len(self.ends)

    def line(self, i: int) -> str:
        """Record i's line, without its LF."""
        return self.text[self.ends[i - 1] if i else 0:self.ends[i] - 1]

    def lines(self) -> Iterator[str]:
        start = 0
        text = self.text
        for end in self.ends:
            yield text[start:end - 1]
            start = end

    def split(self, at: int) -> tuple[LineBatch, LineBatch]:
        """(records before `at`, records from `at` on)."""
        cut = self.ends[at - 1] if at else 0
        tail = array("Q", (e - cut for e in self.ends[at:]))
        return LineBatch(self.text[:cut], self.ends[:at]), LineBatch(self.text[cut:], tail)

    @classmethod
    def join(cls, batches: Iterable[LineBatch]) -> LineBatch:
        texts: list[str] = []
        ends = _offsets()
        base = 0
        for b in batches:
            texts.append(b.text)
            if base:
                ends.extend(e + base for e in b.ends)
            else:
                ends.extend(b.ends)
            base += len(b.text)
        return cls("".join(texts), ends)
