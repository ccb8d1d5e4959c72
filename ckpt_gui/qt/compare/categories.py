"""How the compare view tells its categories apart: a theme colour (``theme.colour`` names, light
and dark values) and a short title for the toggles."""

from __future__ import annotations

# Each category's theme colour (``theme.colour``: light and dark values).
COLOURS = {
    "only_a": "red",
    "only_b": "green",
    "shape_mismatch": "orange",
    "dtype_mismatch": "amber",
    "changed": "blue",
    "identical": "grey",
    "nonfinite_b": "red",  # NaN/Inf that appear only in B
}
SHORT_TITLES = {
    "only_a": "Only A",
    "only_b": "Only B",
    "shape_mismatch": "Shape",
    "dtype_mismatch": "Dtype",
    "changed": "Changed",
    "identical": "Identical",
}
