"""procs package."""
