"""The Alpaca REST worker: rate limiter, 429 with reset, 5xx retries, lookups before any
resend, duplicate ids, venue refusals, cancels and resyncs; against the fake Alpaca (loopback)
and, where the fake cannot misbehave that way (a timeout), a stub client.

Requests run synchronously in the test thread (``RestWorker.run_pending``): no thread, no
waiting on timing, every count exact.
"""
from __future__ import annotations

import collections
import json
import time

import pytest
import requests

from procs.alpaca_rest import (
    REASON_BAD_ORDER, CancelResult, RateLimiter, ResyncDone, RestWorker, Snapshot, SubmitResult,
    Unresolved, classify, make_client, parse_position,
)
from tools.fake_alpaca import FakeAlpaca

KEY, SECRET = "PKTESTKEY", "test-secret-value"


@pytest.fixture
def fake():
    with FakeAlpaca(key_id=KEY, secret_key=SECRET, symbols=("AAPL", "MSFT"), quote_rate=0, seed=1) as f:
        f.publish_quote("AAPL", 100.0, 100.02, 300, 200)
        f.publish_quote("MSFT", 300.0, 300.05, 100, 100)
        yield f


class Sleeps:
    """A fake sleep that records how long the worker asked to wait (and advances a clock)."""

    def __init__(self):
        self.t = 1000.0
        self.waits = []

    def __call__(self, s):
        self.waits.append(s)
        self.t += s
        time.sleep(min(s, 0.05))      # a little real time for the fake's own 429 reset clock

    def clock(self):
        return self.t


def worker(fake, sleeps=None, max_retries=5, limiter=None, client=None):
    res = collections.deque()
    w = RestWorker(None, res, limiter or RateLimiter(200), max_retries=max_retries, backoff_s=0.01,
                   backoff_cap_s=0.05, jitter=0.5, sleep=sleeps)
    w.client = client or make_client(KEY, SECRET, True, fake.rest_url, 5.0)
    return w, res


def cids_at(fake):
    return collections.Counter(o["client_order_id"] for o in fake.orders())


def only(res, kind):
    got = [r for r in res if isinstance(r, kind)]
    assert len(got) == 1, list(res)
    return got[0]


# -- the limiter --------------------------------------------------------------------------------

def test_limiter_sliding_window_and_block():
    lim = RateLimiter(3)
    assert [lim.reserve(t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
    assert lim.reserve(3.0) == pytest.approx(57.0)          # the oldest leaves the window at 60
    assert lim.reserve(60.0) == pytest.approx(0.0)          # 0.0 left: one slot free again
    assert lim.reserve(60.5) == pytest.approx(0.5)
    lim.block_until(100.0)
    assert lim.reserve(99.0) == pytest.approx(1.0)           # a 429's reset blocks everything
    assert lim.reserve(100.0) == 0.0
    with pytest.raises(ValueError, match="rate limit"):
        RateLimiter(0)


def test_worker_waits_for_the_local_limit(fake):
    s = Sleeps()
    lim = RateLimiter(2)
    w, res = worker(fake, s, limiter=lim)
    w.clock = s.clock
    for i in range(3):
        w.submit(i + 1, f"lim-{i + 1}", "AAPL", 1, 1, 0.0, 0)
    w.run_pending()
    assert [r.ok for r in res] == [True, True, True]
    assert w.stats["rate_limited"] == 1                     # the third waited, counted once
    assert sum(s.waits) == pytest.approx(60.0, abs=1.0)     # until the first left the window
    assert fake.stats().get("rest_429", 0) == 0


# -- idempotency and retries ------------------------------------------------------------------

def test_submit_ok_then_the_same_id_again_is_resolved_by_lookup(fake):
    w, res = worker(fake)
    w.submit(1, "dup-1", "AAPL", 1, 10, 0.0, 0)
    w.submit(1, "dup-1", "AAPL", 1, 10, 0.0, 0)             # e.g. a second engine run's id collision
    w.run_pending()
    a, b = [r for r in res if isinstance(r, SubmitResult)]
    assert a.ok and not a.recovered and b.ok and b.recovered
    assert a.order.venue_id == b.order.venue_id
    assert cids_at(fake)["dup-1"] == 1
    assert fake.stats()["rest_duplicate_client_order_id"] == 1
    assert w.stats["duplicates_avoided"] == 1 and w.stats["lookups"] == 1


def test_429_honours_the_reset_and_sends_once(fake):
    s = Sleeps()
    w, res = worker(fake, s)
    fake.faults.http_429(2, reset_s=1)
    w.submit(7, "r429-7", "AAPL", 1, 5, 0.0, 0)
    w.run_pending()
    r = only(res, SubmitResult)
    assert r.ok and r.attempts == 3
    assert w.stats["http_429"] == 2 and w.stats["lookups"] == 0   # a 429 is not ambiguous
    assert cids_at(fake)["r429-7"] == 1
    assert sum(s.waits) >= 1.0                                     # waited for X-Ratelimit-Reset


def test_500s_look_up_before_each_resend(fake):
    w, res = worker(fake)
    fake.faults.http_500(2)
    w.submit(3, "r500-3", "MSFT", -1, 5, 0.0, 0)
    w.run_pending()
    r = only(res, SubmitResult)
    # the fake fails the next 2 calls: the POST, then the lookup after it (retried); the
    # resend comes only after a lookup answered 404
    assert r.ok and r.attempts == 2
    assert w.stats["venue_errors"] == 2 and w.stats["retries"] == 1 and w.stats["lookups"] == 2
    assert fake.stats()["rest_status_404"] == 1
    assert cids_at(fake)["r500-3"] == 1


def test_drop_after_accept_is_found_not_resent(fake):
    w, res = worker(fake)
    fake.faults.drop_after_accept(1)
    w.submit(4, "drop-4", "AAPL", 1, 5, 0.0, 0)
    w.run_pending()
    r = only(res, SubmitResult)
    assert r.ok and r.recovered and r.order.cid == "drop-4"
    assert w.stats["duplicates_avoided"] == 1 and w.stats["submitted"] == 0
    assert fake.stats()["rest_dropped_after_accept"] == 1
    assert cids_at(fake)["drop-4"] == 1                            # created once, never resent


def test_a_500_storm_leaves_the_order_unresolved_never_resent(fake):
    w, res = worker(fake, max_retries=2)
    fake.faults.http_500(10)               # the lookups fail too: nobody can tell
    w.submit(5, "ex-5", "AAPL", 1, 5, 0.0, 0)
    w.run_pending()
    fake.faults.http_500(0)
    assert isinstance(only(res, Unresolved), Unresolved)
    assert cids_at(fake)["ex-5"] == 0 and fake.stats().get("rest_orders_received", 0) == 0
    assert w.stats["lookups"] == 3         # max_retries + 1 lookups, then give the stage the question


def test_retries_exhausted_is_a_rejection_with_the_venue_code():
    class Failing(StubClient):
        def submit_order(self, req):
            from alpaca.common.exceptions import APIError

            self.calls.append("submit")
            resp = requests.Response()
            resp.status_code = 500
            resp._content = b'{"code": 50010000, "message": "internal server error"}'
            raise APIError(resp.text, requests.HTTPError(response=resp))

    stub = Failing(created=False)
    res = collections.deque()
    w = RestWorker(None, res, RateLimiter(200), max_retries=2, backoff_s=0.001)
    w.client = stub
    w.submit(5, "ex-5", "AAPL", 1, 5, 0.0, 0)
    w.run_pending()
    r = only(res, SubmitResult)
    assert not r.ok and r.code == 50010000 and r.attempts == 3
    # every resend, and the final verdict, came after a lookup that answered 404
    assert stub.calls == ["submit", "lookup"] * 3
    assert w.stats["rejected"] == 1 and w.stats["retries"] == 2


def test_the_final_lookup_waits_settle_s_whatever_the_retry_settings():
    # A 404 at the final lookup closes the order, so a slow request gets settle_s (default:
    # the backoff cap, no jitter) to land first, even with no retries and no backoff.
    class TimingOut(StubClient):
        def submit_order(self, req):
            self.calls.append("submit")
            raise requests.ConnectionError("connection reset")

    stub = TimingOut(created=False)
    res = collections.deque()
    w = RestWorker(None, res, RateLimiter(200), max_retries=0, backoff_s=0.0, backoff_cap_s=3.0,
                   sleep=lambda s: stub.calls.append(f"sleep {s:g}"))
    w.client = stub
    w.submit(9, "ex-9", "AAPL", 1, 5, 0.0, 0)
    w.run_pending()
    assert not only(res, SubmitResult).ok
    assert stub.calls == ["submit", "sleep 0", "sleep 3", "lookup"]


def test_venue_refusal_maps_to_its_code(fake):
    w, res = worker(fake)
    w.submit(6, "big-6", "AAPL", 1, 1_000_000, 0.0, 0)             # far beyond buying power
    w.submit(8, "bad-8", "NOPE", 1, 1, 0.0, 0)                     # unknown asset
    w.run_pending()
    a, b = [r for r in res if isinstance(r, SubmitResult)]
    assert not a.ok and a.code == 40310000
    assert not b.ok and b.code == 40010001 and "NOPE" in b.message
    assert w.stats["rejected"] == 2 and w.stats["lookups"] == 1    # the 422 was checked once


def test_bad_order_is_refused_locally():
    res = collections.deque()
    w = RestWorker(None, res, RateLimiter(200))
    w.client = object()                      # must not be used
    w.submit(9, "neg-9", "AAPL", 1, -5, 0.0, 0)
    w.run_pending()
    r = only(res, SubmitResult)
    assert not r.ok and r.code == REASON_BAD_ORDER and r.attempts == 0


class StubClient:
    """Times out on the first submit; ``created`` says whether that submit reached the venue."""

    def __init__(self, created: bool):
        self.created, self.calls, self.orders = created, [], {}

    def _order(self, cid):
        return {"id": "00000000-0000-4000-8000-000000000001", "client_order_id": cid, "symbol": "AAPL",
                "side": "buy", "qty": "5", "filled_qty": "0", "filled_avg_price": None, "status": "new",
                "type": "market"}

    def submit_order(self, req):
        self.calls.append("submit")
        if self.calls.count("submit") == 1:
            if self.created:
                self.orders[req.client_order_id] = self._order(req.client_order_id)
            raise requests.exceptions.ReadTimeout("read timed out (stub)")
        self.orders[req.client_order_id] = self._order(req.client_order_id)
        return self.orders[req.client_order_id]

    def get_order_by_client_id(self, cid):
        from alpaca.common.exceptions import APIError

        self.calls.append("lookup")
        if cid in self.orders:
            return self.orders[cid]
        resp = requests.Response()
        resp.status_code = 404
        resp._content = b'{"code": 40410000, "message": "order not found"}'
        raise APIError(resp.text, requests.HTTPError(response=resp))


@pytest.mark.parametrize("created", [True, False])
def test_timeout_looks_up_before_resending(created):
    stub = StubClient(created)
    res = collections.deque()
    w = RestWorker(None, res, RateLimiter(200), backoff_s=0.001)
    w.client = stub
    w.submit(1, "to-1", "AAPL", 1, 5, 0.0, 0)
    w.run_pending()
    r = only(res, SubmitResult)
    assert r.ok
    if created:        # the venue had it: found, never sent again
        assert stub.calls == ["submit", "lookup"] and r.recovered
    else:              # provably absent (404): sent again, once
        assert stub.calls == ["submit", "lookup", "submit"] and not r.recovered


def test_lookups_that_keep_failing_leave_the_order_unresolved():
    class Down(StubClient):
        def get_order_by_client_id(self, cid):
            self.calls.append("lookup")
            raise requests.exceptions.ConnectionError("down (stub)")

    stub = Down(created=True)
    res = collections.deque()
    w = RestWorker(None, res, RateLimiter(200), max_retries=2, backoff_s=0.001)
    w.client = stub
    w.submit(1, "un-1", "AAPL", 1, 5, 0.0, 0)
    w.run_pending()
    assert isinstance(only(res, Unresolved), Unresolved)
    assert stub.calls.count("submit") == 1                     # never resent blind


def test_classify_reads_code_and_reset():
    from alpaca.common.exceptions import APIError

    resp = requests.Response()
    resp.status_code = 429
    resp.headers["X-Ratelimit-Reset"] = "1700000000"
    resp._content = json.dumps({"code": 42910000, "message": "rate limit exceeded"}).encode()
    f = classify(APIError(resp.text, requests.HTTPError(response=resp)))
    assert (f.kind, f.status, f.code, f.reset) == ("rate", 429, 42910000, 1700000000.0)
    with pytest.raises(KeyError):
        classify(KeyError("a bug, not a venue answer"))


# -- cancel, lookup, resync ---------------------------------------------------------------------

def test_cancel_then_cancel_again(fake):
    w, res = worker(fake)
    w.submit(1, "c-1", "AAPL", 1, 5, 50.0, 1)                     # limit far below: rests
    w.run_pending()
    vid = only(res, SubmitResult).order.venue_id
    res.clear()
    w.cancel(1, vid)
    w.cancel(1, vid)
    w.run_pending()
    a, b = [r for r in res if isinstance(r, CancelResult)]
    assert a.ok and not b.ok and b.code == 42210000
    assert fake.orders()[0]["status"] == "canceled"


def test_cancels_jump_the_queue(fake):
    w, res = worker(fake)
    w.submit(1, "q-1", "AAPL", 1, 5, 50.0, 1)
    w.run_pending()
    vid = only(res, SubmitResult).order.venue_id
    res.clear()
    w.submit(2, "q-2", "AAPL", 1, 5, 50.0, 1)
    w.lookup(1, "q-1")
    w.cancel(1, vid)
    w.run_pending()
    assert [type(r).__name__ for r in res] == ["CancelResult", "SubmitResult", "Snapshot"]


def test_resync_lists_every_order_since_start(fake):
    w, res = worker(fake)
    start = "2000-01-01T00:00:00+00:00"
    for i in range(3):
        w.submit(i + 1, f"rs-{i + 1}", "AAPL", 1, 1, 0.0, 0)
    w.run_pending()
    res.clear()
    w.resync(start)
    w.run_pending()
    snaps = [r for r in res if isinstance(r, Snapshot)]
    assert sorted(s.update.order.cid for s in snaps) == ["rs-1", "rs-2", "rs-3"]
    assert all(s.update.source == "resync" for s in snaps)
    assert only(res, ResyncDone).ok


def test_parse_position_signs_shorts_and_names_a_malformed_one():
    assert parse_position({"symbol": "AAPL", "qty": "5", "side": "long", "avg_entry_price": "150.5"}) == \
        ("AAPL", 5.0, 150.5)
    assert parse_position({"symbol": "MSFT", "qty": "3", "side": "short"}) == ("MSFT", -3.0, 0.0)
    with pytest.raises(ValueError, match="malformed position .*'TSLA'"):
        parse_position({"symbol": "TSLA", "qty": "lots"})
