# The C kernel of ``nibble_stats`` (``_nibbles.c``), for type checking.
def moments(
    words: int,
    row_stride: int,
    rows: int,
    columns: int,
    rows_per_group: int,
    zero_codes: int,
    scales: int,
    /,
) -> tuple[int, float, float, float, float, int]: ...
def awq_moments(
    words: int,
    row_stride: int,
    rows: int,
    n_words: int,
    rows_per_group: int,
    zero_codes: int,
    scales: int,
    first: int,
    last: int,
    /,
) -> tuple[int, float, float, float, float, int]: ...
