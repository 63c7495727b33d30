"""One machine's shift accounts: time is booked as it passes into the shift it falls in.

The newest account is the current shift's; a few closed ones are kept so that a stop that
ends after the shift change, or a late part, still lands in the shift it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from linemon.model import MachineState
from rules.calendar import ShiftCalendar, ShiftInstance
from rules.oee import ShiftAccount

KEEP_CLOSED = 6  # closed shift accounts kept in memory (two days of three shifts)


@dataclass(slots=True)
class ShiftBook:
    calendar: ShiftCalendar  # the machine's: its maintenance windows included
    ideal_cycle_time_s: float  # the default a new account is opened with
    booked_until: datetime | None = None
    account: ShiftAccount | None = None
    closed: list[ShiftAccount] = field(default_factory=list)

    def book(self, until: datetime, state: MachineState) -> list[tuple[ShiftAccount, float]]:
        """Book [booked_until, until) in `state`; return the planned seconds per account."""
        start = self.booked_until
        if start is None or until <= start:
            return []
        acct = self.account
        if acct is not None and acct.shift.start <= start and until <= acct.shift.end:
            pieces = [(acct, acct.book(start, until, state))]  # the common case
        else:
            pieces = []
            for shift in self.calendar.shifts_between(start, until):
                account = self.account_for(shift)
                pieces.append((account, account.book(max(start, shift.start), until, state)))
        self.booked_until = until
        return pieces

    def account_for(self, shift: ShiftInstance) -> ShiftAccount:
        """The shift's account, opening it (and closing the current one) when it is new."""
        if self.account is None or self.account.shift.key != shift.key:
            if self.account is not None:
                self.closed.append(self.account)
                del self.closed[:-KEEP_CLOSED]
            self.account = ShiftAccount(shift, self.ideal_cycle_time_s)
        return self.account

    def account_at(self, t: datetime) -> ShiftAccount | None:
        current = self.account
        if current is not None and current.shift.start <= t < current.shift.end:
            return current  # the usual case (every part counted goes through here)
        for account in reversed(self.closed):
            if account is not None and account.shift.start <= t < account.shift.end:
                return account
        return None

    def account_for_parts(self, at: datetime) -> ShiftAccount | None:
        """The shift a part made at `at` counts in (a part at 22:00 is the night shift's)."""
        found = self.account_at(at)
        if found is None:
            shift, current = self.calendar.shift_at(at), self.account
            if shift is not None and (current is None or shift.start >= current.shift.end):
                found = self.account_for(shift)
        return found

    def account_of(self, shift_key: str) -> ShiftAccount | None:
        for account in (self.account, *reversed(self.closed)):
            if account is not None and account.shift.key == shift_key:
                return account
        return None

    def current(self, now: datetime) -> ShiftAccount | None:
        shift = self.calendar.shift_at(now)
        return self.account_for(shift) if shift is not None else None
