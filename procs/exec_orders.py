"""The order state machine of the exec stage: one transition table, checked everywhere.

States::

    NEW ──submit──▶ SUBMITTED ──accept──▶ ACCEPTED ──partial──▶ PARTIALLY_FILLED ──fill──▶ FILLED
     │  ◀──retry──     │  (fills before the ack go straight to PARTIALLY_FILLED / FILLED)
     │                 ├─reject─▶ REJECTED          ACCEPTED / PARTIALLY_FILLED
     ├─reject─▶ REJECTED (exec: retries exhausted)     ├─cancel_req─▶ PENDING_CANCEL ─canceled─▶ CANCELED
     └─cancel_req─▶ CANCELED (never reached the venue) │                └─cancel_reject─▶ (back)
                                                      ├─replace_req─▶ PENDING_REPLACE ─replaced─▶ REPLACED
                                                      │                └─replace_reject─▶ (back)
                                                      ├─canceled─▶ CANCELED (IOC remainder, venue)
                                                      └─expire─▶ EXPIRED (DAY at the close)

* NEW: exec has the order and has not handed it to the venue (rate limiter, retry backoff).
* SUBMITTED: handed to the venue, no answer yet (the venue's latency).
* PENDING_CANCEL / PENDING_REPLACE: a cancel / replace is in flight; fills may still arrive
  (a partial fill keeps the pending state, a full fill ends the order: the cancel came too
  late). A refused cancel or replace returns the order to ACCEPTED, or PARTIALLY_FILLED when
  something has filled (the table's ``RESTORE``).
* FILLED, CANCELED, REJECTED, EXPIRED, REPLACED are terminal: every event is illegal there.

``TRANSITIONS[state, event]`` is the next state, ``ILLEGAL`` (-1) or ``RESTORE`` (-2). The
jitted ``next_state`` is what exec calls; the Python ``transition`` raises
``IllegalTransition`` with a message naming the order, its state and the event.
"""
from __future__ import annotations

import numpy as np
from numba import njit

(NEW, SUBMITTED, ACCEPTED, PARTIALLY_FILLED, FILLED, CANCELED, REJECTED, EXPIRED, REPLACED,
 PENDING_CANCEL, PENDING_REPLACE) = range(11)
STATE_NAMES = ("new", "submitted", "accepted", "partially_filled", "filled", "canceled", "rejected",
               "expired", "replaced", "pending_cancel", "pending_replace")
TERMINAL = (FILLED, CANCELED, REJECTED, EXPIRED, REPLACED)

(E_SUBMIT, E_RETRY, E_ACCEPT, E_PARTIAL_FILL, E_FILL, E_REJECT, E_CANCEL_REQ, E_CANCELED,
 E_CANCEL_REJECT, E_EXPIRE, E_REPLACE_REQ, E_REPLACED, E_REPLACE_REJECT) = range(13)
EVENT_NAMES = ("submit", "retry", "accept", "partial_fill", "fill", "reject", "cancel_request",
               "canceled", "cancel_reject", "expire", "replace_request", "replaced", "replace_reject")

ILLEGAL = -1
RESTORE = -2          #: back to ACCEPTED, or PARTIALLY_FILLED if anything has filled

#: (state, event) -> next state. Everything not listed is illegal.
LEGAL = {
    (NEW, E_SUBMIT): SUBMITTED,
    (NEW, E_REJECT): REJECTED,
    (NEW, E_CANCEL_REQ): CANCELED,
    (SUBMITTED, E_RETRY): NEW,
    (SUBMITTED, E_ACCEPT): ACCEPTED,
    (SUBMITTED, E_PARTIAL_FILL): PARTIALLY_FILLED,
    (SUBMITTED, E_FILL): FILLED,
    (SUBMITTED, E_REJECT): REJECTED,
    (SUBMITTED, E_CANCEL_REQ): PENDING_CANCEL,
    (SUBMITTED, E_CANCELED): CANCELED,
    (SUBMITTED, E_EXPIRE): EXPIRED,
    (ACCEPTED, E_PARTIAL_FILL): PARTIALLY_FILLED,
    (ACCEPTED, E_FILL): FILLED,
    (ACCEPTED, E_CANCEL_REQ): PENDING_CANCEL,
    (ACCEPTED, E_CANCELED): CANCELED,
    (ACCEPTED, E_EXPIRE): EXPIRED,
    (ACCEPTED, E_REPLACE_REQ): PENDING_REPLACE,
    (PARTIALLY_FILLED, E_PARTIAL_FILL): PARTIALLY_FILLED,
    (PARTIALLY_FILLED, E_FILL): FILLED,
    (PARTIALLY_FILLED, E_CANCEL_REQ): PENDING_CANCEL,
    (PARTIALLY_FILLED, E_CANCELED): CANCELED,
    (PARTIALLY_FILLED, E_EXPIRE): EXPIRED,
    (PARTIALLY_FILLED, E_REPLACE_REQ): PENDING_REPLACE,
    (PENDING_CANCEL, E_PARTIAL_FILL): PENDING_CANCEL,
    (PENDING_CANCEL, E_FILL): FILLED,
    (PENDING_CANCEL, E_CANCELED): CANCELED,
    (PENDING_CANCEL, E_CANCEL_REJECT): RESTORE,
    (PENDING_CANCEL, E_EXPIRE): EXPIRED,
    (PENDING_REPLACE, E_PARTIAL_FILL): PENDING_REPLACE,
    (PENDING_REPLACE, E_FILL): FILLED,
    (PENDING_REPLACE, E_REPLACED): REPLACED,
    (PENDING_REPLACE, E_REPLACE_REJECT): RESTORE,
    (PENDING_REPLACE, E_CANCELED): CANCELED,
    (PENDING_REPLACE, E_EXPIRE): EXPIRED,
}

TRANSITIONS = np.full((len(STATE_NAMES), len(EVENT_NAMES)), ILLEGAL, np.int64)
for (_s, _e), _n in LEGAL.items():
    TRANSITIONS[_s, _e] = _n


class IllegalTransition(ValueError):
    """An event that the order's state does not allow."""


@njit(cache=True, inline="always")
def next_state(table, state, event, filled):
    """The state after ``event`` in ``state`` (``filled`` > 0 picks PARTIALLY_FILLED on RESTORE),
    or -1 if the transition is illegal."""
    n = table[state, event]
    if n == RESTORE:
        return PARTIALLY_FILLED if filled > 0.0 else ACCEPTED
    return n


def transition(state: int, event: int, filled: float = 0.0, order_id: int | None = None) -> int:
    """Python form of ``next_state``: raise IllegalTransition with a clear message."""
    if not (0 <= state < len(STATE_NAMES)) or not (0 <= event < len(EVENT_NAMES)):
        raise IllegalTransition(f"unknown state {state} or event {event}")
    n = int(next_state(TRANSITIONS, state, event, filled))
    if n == ILLEGAL:
        who = f"order {order_id}: " if order_id is not None else ""
        allowed = sorted(EVENT_NAMES[e] for (s, e) in LEGAL if s == state)
        raise IllegalTransition(
            f"{who}illegal transition: event {EVENT_NAMES[event]!r} in state {STATE_NAMES[state]!r}"
            + (f" (allowed: {', '.join(allowed)})" if allowed else " (a terminal state allows nothing)"))
    return n


def client_order_id(engine: str, run_id: int, order_id: int) -> str:
    """The client order id a venue sees: unique per engine run, the same on every retry.

    ``run_id`` is the run's start time (unix ns) or any number unique to the run; the numeric
    ``order_id`` is risk's (gap-free from 1 within the run). At most 48 characters (Alpaca).
    """
    return f"{engine}-{run_id:x}-{order_id}"[:48]
