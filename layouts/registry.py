"""Record dtypes by the names the topology config uses (``[rings.X] record = "tick"``)."""
from __future__ import annotations

from .market import TICK
from .orders import BOOK_EVENT, FILL, INTENT, ORDER

RECORDS = {
    "tick": TICK,
    "top": BOOK_EVENT,
    "intent": INTENT,
    "order": ORDER,
    "fill": FILL,
}
