# The C kernel of ``positions`` (``_positions.c``), for type checking.
def position(
    addresses: list[int],
    n: int,
    points: list[int],
    pairs: list[tuple[int, int]],
    triples: list[tuple[int, int, int]],
    /,
) -> tuple[
    list[tuple[int, float, float, float, float, int, int]],
    list[tuple[float, bool]],
    list[float],
]: ...
