"""What the service counts: drift against the training reference, and its Prometheus metrics."""
