"""Device drivers: one per device kind, speaking the protocol and nothing else."""
