"""Pre-trade checks: every rejection reason, every trading state, the limits file.

Each test builds a RiskStage over a limits file written for it (sections it does not write keep
the shipped defaults) and drives it with the injected clock ``now``.
"""
from __future__ import annotations

import math
import os

import pytest

from layouts.control import TRADING_ACTIVE, TRADING_HALTED, TRADING_REDUCING
from layouts.orders import ACTION_CANCEL, BUY, FILL_PARTIAL, ORDER_LIMIT, SELL, TIF_FOK, TIF_IOC
from layouts.risk import HALT_EXTERNAL, HALT_KILL_SWITCH, REJECT_REASONS
from procs.risk_limits import DEFAULTS, SHIPPED, RiskLimitsError, load_limits
from test_risk import Harness, fill, intent, limits_file

SEC = 1_000_000_000
NO_COLLAR = "[orders]\nprice_collar_bps = 0.0\n"


@pytest.fixture
def mk(engine, drain_ring, tmp_path):
    def make(text=None, **params):
        path = limits_file(tmp_path, text) if text is not None else None
        return Harness(engine, drain_ring, limits=path, **params)
    return make


def only(h, reason, n=1):
    assert h.rejections() == {f"rej_{reason}": n}


@pytest.mark.parametrize("bad", [
    dict(sym=4), dict(sym=2**32 - 1), dict(side=0), dict(side=2), dict(qty=0.0), dict(qty=-1.0),
    dict(qty=math.nan), dict(qty=math.inf), dict(order_type=7), dict(tif=9),
    dict(order_type=ORDER_LIMIT), dict(order_type=ORDER_LIMIT, limit_px=math.nan),
    dict(order_type=ORDER_LIMIT, limit_px=-1.0), dict(action=ACTION_CANCEL), dict(algo=9),
])
def test_bad_intent(mk, bad):
    h = mk()
    assert len(h.send(intent(**bad))) == 0
    only(h, "bad_intent")
    assert h.counters() == {"intents_in": 1, "rejected": 1, "rej_bad_intent": 1}


def test_kill_switch_and_halted_reject_everything(mk):
    h = mk()
    h.mem.control["kill_switch"] = 1
    assert len(h.send(intent(), intent(side=SELL))) == 0
    h.mem.control["kill_switch"] = 0
    h.mem.control["trading_state"] = TRADING_HALTED
    assert len(h.send(intent())) == 0
    h.mem.control["trading_state"] = TRADING_ACTIVE
    orders = h.send(intent())
    assert orders["order_id"].tolist() == [1]                  # ids are given to orders only
    assert h.rejections() == {"rej_kill_switch": 2, "rej_halted": 1}


def test_restricted_symbols(mk):
    h = mk('[positions]\nrestricted = ["SYM1"]\n')
    assert len(h.send(intent(sym=1), intent(sym=0), intent(sym=1, side=SELL))) == 1
    only(h, "restricted", 2)


def test_reduce_only(mk):
    h = mk()
    (o,) = h.send(intent(side=BUY, qty=100.0))
    h.fill(fill(o["order_id"], 100.0, 100.0))
    h.mem.control["trading_state"] = TRADING_REDUCING
    assert len(h.send(intent(side=BUY, qty=1.0))) == 0           # would add
    assert len(h.send(intent(side=SELL, qty=150.0))) == 0        # would flip
    assert len(h.send(intent(side=SELL, qty=60.0))) == 1         # reduces
    assert len(h.send(intent(side=SELL, qty=50.0))) == 0         # 60 open + 50 > 100 held
    assert len(h.send(intent(side=SELL, qty=40.0))) == 1         # exactly to flat
    assert len(h.send(intent(sym=1, side=SELL, qty=1.0))) == 0   # flat: nothing reduces
    only(h, "reduce_only", 4)
    assert h.state()["trading_state"] == TRADING_REDUCING


def test_max_order_qty_global_and_per_symbol(mk):
    h = mk("[orders]\nmax_order_qty = 400.0\n[symbols.SYM1]\nmax_order_qty = 50.0\n")
    assert len(h.send(intent(qty=401.0), intent(qty=400.0), intent(sym=1, qty=51.0),
                      intent(sym=1, qty=50.0))) == 2
    only(h, "max_order_qty", 2)


def test_max_position_counts_open_orders_per_side_and_symbol(mk):
    h = mk("[orders]\nmax_order_qty = 400.0\n[positions]\nmax_position = 500.0\n"
           "[symbols.SYM2]\nmax_position = 100.0\n")
    assert len(h.send(intent(qty=300.0))) == 1
    assert len(h.send(intent(qty=300.0))) == 0                   # 0 held + 300 open + 300 > 500
    assert len(h.send(intent(qty=200.0))) == 1                   # exactly 500
    assert len(h.send(intent(side=SELL, qty=400.0))) == 1        # sells are checked on their side
    assert len(h.send(intent(side=SELL, qty=200.0))) == 0        # 0 - 400 - 200 < -500
    assert len(h.send(intent(sym=1, qty=400.0))) == 1            # per symbol
    assert len(h.send(intent(sym=2, qty=101.0))) == 0            # the symbol's own limit
    only(h, "max_position", 3)
    p = h.pos(0)
    assert (p["open_buy"], p["open_sell"]) == (500.0, 400.0)


def test_max_position_param_overrides_the_file(mk):
    h = mk(max_position=50, max_order_qty=60)
    assert len(h.send(intent(qty=51.0), intent(qty=61.0), intent(qty=50.0))) == 1
    assert h.rejections() == {"rej_max_position": 1, "rej_max_order_qty": 1}


def test_no_market_data(mk):
    h = mk()
    h.top(1, valid=0)
    assert len(h.send(intent(sym=1), intent(sym=1, order_type=ORDER_LIMIT, limit_px=100.0))) == 0
    only(h, "no_market_data", 2)
    h2 = mk(NO_COLLAR)                                           # collar off: any price will do
    h2.top(1, valid=0)
    assert len(h2.send(intent(sym=1), intent(sym=1, ref_px=100.0),
                       intent(sym=1, order_type=ORDER_LIMIT, limit_px=100.0))) == 2
    only(h2, "no_market_data")                                   # market, no top, no ref_px


def test_price_collar_limit_vs_touch_and_market_vs_ref(mk):
    h = mk("[orders]\nprice_collar_bps = 100.0\n")               # 1 %; top 99 / 101
    orders = h.send(intent(order_type=ORDER_LIMIT, limit_px=102.02),            # > 101 * 1.01
                    intent(order_type=ORDER_LIMIT, limit_px=102.0),             # not above: ok
                    intent(side=SELL, order_type=ORDER_LIMIT, limit_px=98.0),   # < 99 * 0.99
                    intent(side=SELL, order_type=ORDER_LIMIT, limit_px=98.01),  # ok
                    intent(ref_px=99.9),                      # ask 101 > 99.9 * 1.01 = 100.899
                    intent(ref_px=100.0),                     # 101 <= 101: ok
                    intent(side=SELL, ref_px=100.1),          # bid 99 < 100.1 * 0.99 = 99.099
                    intent(side=SELL, ref_px=100.0))          # 99 >= 99: ok
    assert len(orders) == 4
    only(h, "price_collar", 4)


def test_max_order_notional(mk):
    h = mk("[orders]\nmax_order_notional = 10000.0\n")
    # buy at the ask 101: 99 * 101 = 9999 ok, 100 * 101 = 10100 no; a limit is priced at its limit
    assert len(h.send(intent(qty=99.0), intent(qty=100.0),
                      intent(qty=100.0, order_type=ORDER_LIMIT, limit_px=100.0))) == 2
    only(h, "max_order_notional")


def _lose(h, qty=100.0, buy_px=100.0, mark=50.0, sym=0):
    """Open a long and mark it down: unrealized = (mark - buy_px) * qty."""
    (o,) = h.send(intent(sym=sym, qty=qty))
    h.fill(fill(o["order_id"], qty, buy_px, sym=sym))
    h.top(sym, valid=1, bid=mark - 0.5, ask=mark + 0.5, bid_size=1000.0, ask_size=1000.0)
    h.run()


def test_daily_loss_soft_limit_rejects_only_non_reducing_orders(mk):
    h = mk("[loss]\ndaily_loss_limit = 4000.0\nauto_halt = false\n[orders]\nprice_collar_bps = 0.0\n")
    _lose(h, mark=61.0)                                          # -3900: not yet
    assert len(h.send(intent(sym=1, qty=1.0))) == 1
    h.top(0, valid=1, bid=59.5, ask=60.5)                        # -4000: at the limit
    assert len(h.send(intent(sym=1, qty=1.0))) == 0
    assert len(h.send(intent(side=SELL, qty=10.0))) == 1         # reducing passes
    only(h, "daily_loss")
    assert h.state()["day_pnl"] == pytest.approx(-4000.0)
    assert h.mem.control["trading_state"][0] == TRADING_ACTIVE  # no auto halt


def test_drawdown_soft_limit_from_the_peak(mk):
    h = mk("[loss]\nmax_drawdown = 1000.0\nauto_halt = false\ndaily_loss_limit = 0.0\n"
           "[orders]\nprice_collar_bps = 0.0\n")
    _lose(h, mark=120.0)                                         # +2000: new peak
    h.top(0, valid=1, bid=109.5, ask=110.5)                      # +1000: 1000 below the peak
    h.run()
    st = h.state()
    assert (st["peak_equity"] - st["equity"], st["drawdown"]) == pytest.approx((1000.0, 1000.0))
    assert len(h.send(intent(sym=1, qty=1.0))) == 0
    only(h, "drawdown")


def test_gross_exposure_counts_open_orders_and_spares_reducing_orders(mk):
    h = mk("[positions]\nmax_gross_exposure = 15000.0\n")
    (o,) = h.send(intent(qty=100.0))                             # 100 * 101 = 10100
    assert len(h.send(intent(sym=1, qty=100.0))) == 0            # 20200 > 15000
    only(h, "gross_exposure")
    h.fill(fill(o["order_id"], 100.0, 100.0))
    assert len(h.send(intent(side=SELL, qty=100.0))) == 1        # reduces: exempt


def test_net_exposure(mk):
    h = mk("[positions]\nmax_net_exposure = 15000.0\n")
    assert len(h.send(intent(qty=100.0))) == 1                   # net +10100
    assert len(h.send(intent(sym=1, qty=100.0))) == 0            # +20200
    assert len(h.send(intent(sym=1, side=SELL, qty=100.0))) == 1  # 10100 - 9900
    only(h, "net_exposure")


def test_concentration(mk):
    h = mk("[account]\nstarting_equity = 100000.0\n[positions]\nmax_concentration = 0.1\n")
    assert len(h.send(intent(qty=100.0), intent(qty=90.0))) == 1   # 10100 > 10000; 9090 ok
    only(h, "concentration")
    # the worst side counts: 90 open buys + a 100 sell -> |-100| * 99 = 9900 ok, 110 -> no
    assert len(h.send(intent(side=SELL, qty=110.0), intent(side=SELL, qty=100.0))) == 1
    only(h, "concentration", 2)


def test_buying_power(mk):
    h = mk("[account]\nstarting_equity = 100000.0\nleverage = 0.15\n"
           "[positions]\nmax_concentration = 1.0\n")
    assert len(h.send(intent(qty=100.0))) == 1                   # 10100 <= 15000
    assert len(h.send(intent(sym=1, qty=100.0))) == 0            # 10100 > 15000 - 10100
    assert len(h.send(intent(sym=1, qty=40.0))) == 1             # 4040 <= 15000 - 100 * 100
    only(h, "buying_power")
    assert h.state()["buying_power"] == pytest.approx(15000.0 - 140 * 100.0)   # at the mark


def test_max_open_orders_and_release_on_fill(mk):
    h = mk("[orders]\nmax_open_orders = 2\n")
    a, b = h.send(intent(), intent(), intent())
    only(h, "max_open_orders")
    h.fill(fill(a["order_id"], 40.0, 100.0, status=FILL_PARTIAL))  # still open
    assert len(h.send(intent())) == 0
    h.fill(fill(a["order_id"], 60.0, 100.0))                       # done: a slot frees
    assert len(h.send(intent())) == 1
    only(h, "max_open_orders", 2)


def test_rate_per_second_token_bucket_on_the_stage_clock(mk):
    h = mk("[orders]\nrate_per_sec = 2\nrate_per_min = 0\n")
    i = lambda: intent(qty=1.0)                                          # noqa: E731
    assert len(h.send(i(), i(), i(), now=1 * SEC)) == 2                  # burst of 2
    only(h, "rate_per_sec")
    assert len(h.send(i(), now=1 * SEC + SEC // 4)) == 0                 # 0.5 token
    assert len(h.send(i(), i(), now=1 * SEC + SEC // 2)) == 1            # 1 token
    assert len(h.send(i(), i(), i(), now=10 * SEC)) == 2                 # capped at the burst
    only(h, "rate_per_sec", 4)


def test_rate_per_minute_token_bucket(mk):
    h = mk("[orders]\nrate_per_sec = 0\nrate_per_min = 3\n")
    assert len(h.send(*[intent(qty=1.0) for _ in range(4)], now=SEC)) == 3
    assert len(h.send(intent(qty=1.0), now=SEC + 19 * SEC)) == 0         # 0.95 token
    assert len(h.send(intent(qty=1.0), intent(qty=1.0), now=SEC + 21 * SEC + SEC // 2)) == 1
    only(h, "rate_per_min", 3)                                           # 0.95 + 1.5 s * 0.05 / s


def test_rejected_orders_take_no_tokens(mk):
    h = mk("[orders]\nrate_per_sec = 1\nrate_per_min = 0\nmax_order_qty = 10.0\n")
    assert len(h.send(intent(qty=11.0), intent(qty=5.0), now=SEC)) == 1


def test_every_reason_has_a_test():
    src = open(__file__).read() + open(os.path.join(os.path.dirname(__file__), "test_risk.py")).read()
    missing = [r for r in REJECT_REASONS if f'"{r}"' not in src and f"rej_{r}" not in src]
    assert missing == []


def test_trading_state_transitions(mk):
    h = mk()
    (o,) = h.send(intent(qty=100.0))
    h.fill(fill(o["order_id"], 100.0, 100.0))
    open_buy = h.send(intent(qty=10.0, order_type=ORDER_LIMIT, limit_px=90.0))
    seen = []
    for state, buy_ok, sell_ok in [(TRADING_ACTIVE, True, True), (TRADING_REDUCING, False, True),
                                   (TRADING_HALTED, False, False), (TRADING_ACTIVE, True, True)]:
        h.mem.control["trading_state"] = state
        out = h.send(intent(qty=1.0), intent(side=SELL, qty=1.0))
        out = out[out["action"] == 0]
        seen.append((state, int(h.state()["trading_state"])))
        assert (BUY in out["side"], SELL in out["side"]) == (buy_ok, sell_ok), state
    assert seen == [(0, 0), (1, 1), (2, 2), (0, 0)]
    assert h.rejections() == {"rej_reduce_only": 1, "rej_halted": 2}
    # HALTED set from outside canceled the open orders once (the resting buy and the two
    # orders sent while ACTIVE and REDUCING that are still open)
    st = h.state()
    assert st["halt_reason"] == HALT_EXTERNAL and h.counters()["cancels_out"] == 4
    assert open_buy["order_id"].tolist() == [2]


def test_kill_switch_cancels_open_orders_and_stops_within_the_cycle(mk):
    h = mk()
    sent = h.send(*[intent(sym=s % 4, qty=10.0, order_type=ORDER_LIMIT, limit_px=95.0) for s in range(6)])
    assert len(sent) == 6
    h.fill(fill(sent[0]["order_id"], 10.0, 95.0))                # one already filled
    h.mem.control["kill_switch"] = 1
    h.mem.rings["intent"].put(intent())
    assert h.risk.do_work(h.now) > 0                             # one cycle
    out = h.drain(h.mem.rings["order"])
    assert sorted(out["order_id"].tolist()) == [2, 3, 4, 5, 6] and set(out["action"]) == {ACTION_CANCEL}
    assert out["qty"].tolist() == [10.0] * 5
    only(h, "kill_switch")
    st = h.state()
    assert st["kill_seen_ns"] == h.now and st["cancels_sent_ns"] == h.now
    assert st["halt_reason"] == HALT_KILL_SWITCH
    assert len(h.send(intent())) == 0                            # no second sweep
    assert h.counters()["cancels_out"] == 5


def test_tif_and_limit_fields_pass_through(mk):
    h = mk()
    o = h.send(intent(order_type=ORDER_LIMIT, limit_px=100.5, tif=TIF_IOC),
               intent(side=SELL, tif=TIF_FOK))
    assert o["tif"].tolist() == [TIF_IOC, TIF_FOK] and o["limit_px"].tolist() == [100.5, 0.0]


# -- the limits file ---------------------------------------------------------------------------

def test_shipped_limits_file_equals_the_built_in_defaults():
    lim = load_limits(SHIPPED, ("SYM0",))
    assert lim.source == SHIPPED and lim.values == DEFAULTS and lim.per_symbol == {}
    assert load_limits(None).source == SHIPPED


def test_limits_file_errors_name_file_and_key_all_at_once(tmp_path):
    path = limits_file(tmp_path, """
[orders]
max_order_qty = -5
rate_per_sec = 1.5
bogus = 1
[positions]
restricted = ["NOPE"]
max_position = "lots"
[account]
pnl_method = "lifo"
[loss]
auto_halt = 1
[weird]
x = 1
[symbols.NOPE]
max_position = 1.0
[symbols.SYM0]
max_leverage = 2.0
""")
    with pytest.raises(RiskLimitsError) as e:
        load_limits(path, ("SYM0", "SYM1"))
    msg = str(e.value)
    for key in ("orders.max_order_qty: must be > 0.0", "orders.rate_per_sec: must be an integer",
                "orders.bogus: unknown key", "positions.restricted: unknown symbol",
                "positions.max_position: must be a number", "account.pnl_method: must be one of",
                "loss.auto_halt: must be true or false", "weird: unknown section",
                "symbols.NOPE: unknown symbol", "symbols.SYM0.max_leverage: unknown key"):
        assert f"{path}: {key}" in msg, key
    assert len(e.value.errors) == 10


def test_missing_or_malformed_limits_file(tmp_path):
    with pytest.raises(RiskLimitsError, match="nope.toml: risk limits file not found"):
        load_limits(str(tmp_path / "nope.toml"))
    bad = limits_file(tmp_path, "[orders\n")
    with pytest.raises(RiskLimitsError, match=r"limits.toml: not valid TOML"):
        load_limits(bad)


def test_a_bad_limits_file_fails_the_stage_build(engine, tmp_path):
    path = limits_file(tmp_path, "[orders]\nmax_open_orders = 0\n")
    with pytest.raises(ValueError, match=r"limits.toml: orders.max_open_orders: must be >= 1"):
        engine({"stages.risk.params.limits": path}).build_stage("risk")


def test_relative_limits_path_resolves_against_the_repository(engine, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    risk = engine({"stages.risk.params.limits": "config/risk_limits.toml"}).build_stage("risk")
    assert risk.limits.source == SHIPPED
