"""Pre-training: config, data pipeline, Trainer, checkpoints, distributed helpers, logging."""
