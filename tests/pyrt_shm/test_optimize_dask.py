"""The same sweep on a dask.distributed LocalCluster (2 worker processes, 1 thread each)
gives the same table as the local pool."""
from __future__ import annotations

import pytest

from pyrt_shm.research.executors import DaskExecutor, ExecutorError, LocalExecutor, make_executor
from pyrt_shm.research.optimize import parse_grid_arg, run_grid
from test_optimize_support import MaSpread, sine_series


def _table(sweep):
    return [(r.index, r.status, r.params, r.metrics, r.error) for r in sweep.runs]


def test_dask_cluster_gives_the_local_pool_table():
    from distributed import LocalCluster

    t, p = sine_series(4000, 40)
    dims = [parse_grid_arg("fast=2,3,5,8"), parse_grid_arg("slow=5,13,21")]
    with LocalExecutor(workers=2) as ex:
        local = run_grid(MaSpread(t, p), dims, ex, objective="pnl", timeout_s=120)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=40)
    try:
        with DaskExecutor(cluster.scheduler_address) as ex:
            assert ex.workers == 2
            remote = run_grid(MaSpread(t, p), dims, ex, objective="pnl", timeout_s=120)
    finally:
        cluster.close(timeout=30)
    assert _table(remote) == _table(local)
    assert remote.executor == "dask" and remote.workers == 2 and remote.failed == 2
    assert all(r.worker.startswith("tcp://127.0.0.1:") for r in remote.runs)


def test_dask_needs_a_scheduler_and_a_reachable_one():
    with pytest.raises(ExecutorError, match="--scheduler ADDRESS"):
        make_executor("dask")
    with pytest.raises(ExecutorError, match="cannot connect"):
        DaskExecutor("tcp://127.0.0.1:9", connect_timeout_s=1)
