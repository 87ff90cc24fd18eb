"""How often an open violation's updates carry pictures: thinning, so evidence stays bounded.

An update still goes out every ``update_interval_seconds`` (the server learns the object is
still there and for how long), but only the 1st, 2nd, 4th, 8th... update carries frames, and at
most ``MAX_UPDATES_WITH_FRAMES`` of them do. With a one-minute interval that is a picture at 1,
2, 4, 8, 16 and 32 minutes: a case that runs an hour carries six update pairs, not sixty, and
one that runs a day carries no more.
"""

from __future__ import annotations

MAX_UPDATES_WITH_FRAMES = 6


def update_carries_frames(number: int, cap: int = MAX_UPDATES_WITH_FRAMES) -> bool:
    """Whether the ``number``-th update (1-based) of a violation attaches new frames."""
    if number < 1:
        raise ValueError(f"update numbers start at 1, not {number}")
    is_power_of_two = number & (number - 1) == 0
    return is_power_of_two and number.bit_length() <= cap
