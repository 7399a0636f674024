"""Stages that misbehave on purpose, for the supervisor's fault tests.

Imported by class path (``stuck_stages:SleepingBook``) from a topology written by a test;
the test puts ``tests/support`` on PYTHONPATH.
"""
import time

from procs.book import BookStage


class SleepingBook(BookStage):
    """A book that gets stuck (blocks forever, without spinning) after ``stall_after`` cycles."""

    def __init__(self, ctx):
        params = dict(ctx.params)
        self.stall_after = int(params.pop("stall_after", 1000))
        from types import MappingProxyType
        ctx.params = MappingProxyType(params)
        super().__init__(ctx)
        self.cycles = 0

    def kernel(self):
        return None          # run through the Python runner, so do_work below is what runs

    def do_work(self, now_ns):
        self.cycles += 1
        if self.cycles > self.stall_after:
            while True:
                time.sleep(3600)
        return super().do_work(now_ns)
