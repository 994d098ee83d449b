"""Training: configuration and presets, optimisers and schedules, checkpoints, the trainer loop."""
