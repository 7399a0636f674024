"""Order state machine: every legal transition, every illegal one rejected with a clear error."""
from __future__ import annotations

import itertools

import pytest

from procs.exec_orders import (
    ACCEPTED, CANCELED, E_ACCEPT, E_CANCEL_REJECT, E_CANCEL_REQ, E_CANCELED, E_EXPIRE, E_FILL,
    E_PARTIAL_FILL, E_REJECT, E_REPLACE_REJECT, E_REPLACE_REQ, E_REPLACED, E_RETRY, E_SUBMIT,
    EVENT_NAMES, EXPIRED, FILLED, NEW, PARTIALLY_FILLED, PENDING_CANCEL, PENDING_REPLACE, REJECTED,
    REPLACED, STATE_NAMES, SUBMITTED, TERMINAL, IllegalTransition, client_order_id, transition,
)

#: Typed by hand from the order lifecycle (not derived from the module's table):
#: (state, event, filled > 0) -> next state.
EXPECTED = {
    (NEW, E_SUBMIT): SUBMITTED, (NEW, E_REJECT): REJECTED, (NEW, E_CANCEL_REQ): CANCELED,
    (SUBMITTED, E_RETRY): NEW, (SUBMITTED, E_ACCEPT): ACCEPTED,
    (SUBMITTED, E_PARTIAL_FILL): PARTIALLY_FILLED, (SUBMITTED, E_FILL): FILLED,
    (SUBMITTED, E_REJECT): REJECTED, (SUBMITTED, E_CANCEL_REQ): PENDING_CANCEL,
    (SUBMITTED, E_CANCELED): CANCELED, (SUBMITTED, E_EXPIRE): EXPIRED,
    (ACCEPTED, E_PARTIAL_FILL): PARTIALLY_FILLED, (ACCEPTED, E_FILL): FILLED,
    (ACCEPTED, E_CANCEL_REQ): PENDING_CANCEL, (ACCEPTED, E_CANCELED): CANCELED,
    (ACCEPTED, E_EXPIRE): EXPIRED, (ACCEPTED, E_REPLACE_REQ): PENDING_REPLACE,
    (PARTIALLY_FILLED, E_PARTIAL_FILL): PARTIALLY_FILLED, (PARTIALLY_FILLED, E_FILL): FILLED,
    (PARTIALLY_FILLED, E_CANCEL_REQ): PENDING_CANCEL, (PARTIALLY_FILLED, E_CANCELED): CANCELED,
    (PARTIALLY_FILLED, E_EXPIRE): EXPIRED, (PARTIALLY_FILLED, E_REPLACE_REQ): PENDING_REPLACE,
    (PENDING_CANCEL, E_PARTIAL_FILL): PENDING_CANCEL, (PENDING_CANCEL, E_FILL): FILLED,
    (PENDING_CANCEL, E_CANCELED): CANCELED, (PENDING_CANCEL, E_EXPIRE): EXPIRED,
    (PENDING_REPLACE, E_PARTIAL_FILL): PENDING_REPLACE, (PENDING_REPLACE, E_FILL): FILLED,
    (PENDING_REPLACE, E_REPLACED): REPLACED, (PENDING_REPLACE, E_CANCELED): CANCELED,
    (PENDING_REPLACE, E_EXPIRE): EXPIRED,
}
#: A refused cancel/replace goes back to where the order was.
RESTORING = {(PENDING_CANCEL, E_CANCEL_REJECT), (PENDING_REPLACE, E_REPLACE_REJECT)}


@pytest.mark.parametrize("state, event", sorted(EXPECTED))
def test_every_legal_transition(state, event):
    assert transition(state, event) == EXPECTED[state, event]
    assert transition(state, event, filled=5.0) == EXPECTED[state, event]


@pytest.mark.parametrize("state, event", sorted(RESTORING))
def test_refused_cancel_or_replace_restores(state, event):
    assert transition(state, event, filled=0.0) == ACCEPTED
    assert transition(state, event, filled=10.0) == PARTIALLY_FILLED


ILLEGAL = sorted(set(itertools.product(range(len(STATE_NAMES)), range(len(EVENT_NAMES))))
                 - set(EXPECTED) - RESTORING)


@pytest.mark.parametrize("state, event", ILLEGAL)
def test_every_illegal_transition_is_rejected_clearly(state, event):
    with pytest.raises(IllegalTransition) as e:
        transition(state, event, order_id=42)
    msg = str(e.value)
    assert msg.startswith("order 42: illegal transition: ")
    assert f"event {EVENT_NAMES[event]!r} in state {STATE_NAMES[state]!r}" in msg
    if state in TERMINAL:
        assert "terminal state" in msg
    else:
        assert "allowed: " in msg


def test_counts_and_terminal_states():
    assert len(EXPECTED) + len(RESTORING) + len(ILLEGAL) == len(STATE_NAMES) * len(EVENT_NAMES)
    for s in TERMINAL:
        assert not any(st == s for st, _ in EXPECTED)
    with pytest.raises(IllegalTransition, match="unknown state"):
        transition(99, E_FILL)


def test_a_whole_lifecycle():
    s = NEW
    for e in (E_SUBMIT, E_RETRY, E_SUBMIT, E_ACCEPT, E_PARTIAL_FILL, E_REPLACE_REQ):
        s = transition(s, e, filled=1.0)
    assert s == PENDING_REPLACE
    assert transition(s, E_REPLACE_REJECT, filled=1.0) == PARTIALLY_FILLED
    assert transition(PARTIALLY_FILLED, E_CANCEL_REQ) == PENDING_CANCEL


def test_client_order_ids_are_unique_per_run_and_stable():
    a = client_order_id("default", 0x17A2B3C4D5E6F708, 12)
    assert a == "default-17a2b3c4d5e6f708-12" == client_order_id("default", 0x17A2B3C4D5E6F708, 12)
    assert a != client_order_id("default", 0x17A2B3C4D5E6F709, 12)
    assert a != client_order_id("default", 0x17A2B3C4D5E6F708, 13)
    assert len(client_order_id("x" * 32, 2**64 - 1, 10**12)) <= 48
