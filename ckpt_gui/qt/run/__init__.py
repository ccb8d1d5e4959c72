"""The run view: a training run's checkpoints side by side, every tensor's movement across them."""
