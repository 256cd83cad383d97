"""Running the hub: the server process, workers, logging, Prometheus metrics."""
