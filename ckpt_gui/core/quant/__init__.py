"""Quantized checkpoints: which tensors stand for one weight (``detect``), how to read that
weight back chunk by chunk (one module per scheme), and the logical rows the tree shows for
them (``view``). Qt-free; torch is imported when a weight is read."""
