"""The research side: backtests over history through the live stages, performance metrics,
reports and parameter optimization (grid, walk-forward, Bayesian).

Nothing here runs on the engine's hot path; it imports the stages and runs them fused in
one process over private memory (``pyrt_shm.wiring.EngineMemory(backend="local")``).
"""
