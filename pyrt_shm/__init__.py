"""pyrt-shm engine core: segments, config, agents, supervisor, histograms, metrics, reader."""
