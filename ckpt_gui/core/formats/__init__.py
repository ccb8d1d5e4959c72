"""One module per on-disk format; ``detect`` decides which one a path holds, by content."""
