"""A buffer between two machines of a line."""

from __future__ import annotations


class Buffer:
    """Parts waiting between two machines."""

    def __init__(self, capacity: int, level: int) -> None:
        self.capacity = capacity
        self.level = level

    def put(self) -> bool:
        if self.level >= self.capacity:
            return False
        self.level += 1
        return True

    def take(self) -> bool:
        if self.level <= 0:
            return False
        self.level -= 1
        return True
