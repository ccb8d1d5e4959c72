"""Qt item models over the core checkpoint tree."""
