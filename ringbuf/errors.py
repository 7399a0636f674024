"""Errors raised by the plain-Python façades (the jitted hot path returns status codes)."""


class RingError(ValueError):
    """A ring was laid out, attached or used inconsistently (names the ring and the fault)."""
