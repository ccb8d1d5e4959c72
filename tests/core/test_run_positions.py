"""A trajectory's chunk positions of float32 copies go through the C kernel (``run/_positions.c``)
in one call: its figures are checked against float64 references and against torch's path for
the same positions, over what the kernel must get right: NaN and ±Inf (counted, left out of the
moments), differences so small their float32 squares underflow (summed again in double), values
whose squares overflow float32, identical copies (a frozen tensor: no difference at all, not
even inf - inf), constant and all-zero chunks, and lengths that leave tails."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from ckpt_gui.core.run.kernel import _Pass, _Plan
from ckpt_gui.core.run.positions import native_fits, native_position

pytestmark = pytest.mark.skipif(
    not native_fits([torch.zeros(1)]), reason="the kernel was not built"
)


def test_the_kernel_is_built_where_a_compiler_is() -> None:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    assert native_fits([torch.zeros(3), torch.ones(3)])


def copies(kind: str, n: int, count: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    base = torch.randn(n, generator=g)
    out = []
    for i in range(count):
        step = torch.randn(n, generator=g)
        if kind == "plain":
            x = base + 0.01 * i * step
        elif kind == "tiny":  # Adam's exp_avg_sq: differences of ~1e-24
            x = (base.abs() + 1) * 1e-22 + 1e-24 * i * step
        elif kind == "huge":  # squares past float32's range
            x = base * 1e25 + 1e23 * i * step
        elif kind == "nonfinite":
            x = base + 0.01 * i * step
            x[min(3, n - 1)], x[n // 2] = math.nan, math.inf
            x[-1] = -math.inf if i % 2 else 1.0
        elif kind == "frozen":  # the same bytes every time, infinities included
            x = base.clone()
            x[0] = math.inf
        elif kind == "constant":
            x = torch.full((n,), 0.25 * (i + 1))
        else:  # zeros
            x = torch.zeros(n)
        out.append(x.contiguous())
    return out


def reference(xs: list[torch.Tensor], points, pairs, triples):
    d = [x.double() for x in xs]
    pts = []
    for i in points:
        x = d[i]
        finite = x[torch.isfinite(x)]
        nan = int(torch.isnan(x).sum())
        inf = int(torch.isinf(x).sum())
        if finite.numel():
            mean = float(finite.mean())
            m2 = float(((finite - mean) ** 2).sum())
            pts.append(
                (finite.numel(), mean, m2, float(finite.min()), float(finite.max()), nan, inf)
            )
        else:
            pts.append((0, 0.0, 0.0, math.inf, -math.inf, nan, inf))

    def bytes_equal(a: int, b: int) -> bool:  # NaN included, which torch.equal calls unequal
        return torch.equal(xs[a].view(torch.int32), xs[b].view(torch.int32))

    same = [bytes_equal(a, b) for a, b in pairs]
    sq = [0.0 if s else float(((d[b] - d[a]) ** 2).sum()) for s, (a, b) in zip(same, pairs)]
    dots = []
    for a, b, c in triples:
        frozen = bytes_equal(a, b) or bytes_equal(b, c)
        dots.append(0.0 if frozen else float(((d[c] - d[b]) * (d[b] - d[a])).sum()))
    return pts, list(zip(sq, same)), dots


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= rel * max(abs(a), abs(b))


PLAN = dict(
    points=[0, 1, 2, 3, 4],
    pairs=[(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4)],
    triples=[(0, 1, 2), (1, 2, 3), (2, 3, 4)],
)


@pytest.mark.parametrize(
    "kind", ["plain", "tiny", "huge", "nonfinite", "frozen", "constant", "zero"]
)
@pytest.mark.parametrize("n", [1, 31, 4096 + 37, 3 * 4096])
def test_positions_in_c_are_the_float64_figures(kind: str, n: int) -> None:
    xs = copies(kind, n)
    points, pairs, dots = native_position(xs, **PLAN)
    want_points, want_pairs, want_dots = reference(xs, **PLAN)
    for got, want in zip(points, want_points):
        assert got[0] == want[0] and got[5:] == want[5:]  # counts
        if want[0]:
            assert (got[3], got[4]) == (want[3], want[4])  # min, max
            assert close(got[1], want[1], 1e-6) or abs(got[1] - want[1]) <= 1e-7 * abs(want[3])
            assert close(got[2], want[2], 1e-5), (kind, got, want)
    for (sq, same), (want_sq, want_same) in zip(pairs, want_pairs):
        assert same == want_same
        assert close(sq, want_sq, 1e-5), (kind, sq, want_sq)
    for dot, want in zip(dots, want_dots):
        scale = max([1.0, *(s for s, _ in want_pairs if math.isfinite(s))])
        assert close(dot, want, 1e-5) or abs(dot - want) <= 1e-6 * scale, (kind, dot, want)


# Plans the kernel's per-member loop cannot take whole: four differences and three triples
# ending at one copy (two differences and one triple go in the loop, the rest on their own), a
# triple whose second difference is not asked for, and copies measured without their points.
ODD_PLANS = [
    dict(
        points=[1, 4],
        pairs=[(0, 4), (1, 4), (2, 4), (3, 4), (0, 1)],
        triples=[(0, 1, 4), (1, 2, 4), (2, 3, 4), (0, 2, 3)],
    ),
    dict(points=[], pairs=[], triples=[(0, 1, 2), (2, 3, 4)]),
    dict(points=[0, 2], pairs=[(1, 3)], triples=[(1, 3, 4)]),
]


@pytest.mark.parametrize("kind", ["plain", "tiny", "huge", "nonfinite", "frozen"])
@pytest.mark.parametrize("plan", range(len(ODD_PLANS)))
def test_plans_of_any_shape_are_the_float64_figures(kind: str, plan: int) -> None:
    xs = copies(kind, 2 * 4096 + 45)
    xs[3] = xs[2].clone()  # one pair of the same bytes in every plan that reaches it
    points, pairs, dots = native_position(xs, **ODD_PLANS[plan])
    want_points, want_pairs, want_dots = reference(xs, **ODD_PLANS[plan])
    assert len(points) == len(want_points) and len(dots) == len(want_dots)
    for got, want in zip(points, want_points):
        assert got[0] == want[0] and got[3:] == want[3:]
        assert close(got[2], want[2], 1e-5)
    for (sq, same), (want_sq, want_same) in zip(pairs, want_pairs):
        assert same == want_same and close(sq, want_sq, 1e-5), (kind, sq, want_sq)
    for dot, want in zip(dots, want_dots):
        scale = max([1.0, *(s for s, _ in want_pairs if math.isfinite(s))])
        assert close(dot, want, 1e-5) or abs(dot - want) <= 1e-6 * scale, (kind, dot, want)


@pytest.mark.parametrize("kind", ["plain", "tiny", "nonfinite", "frozen"])
def test_c_and_torch_give_the_same_figures(kind: str) -> None:
    xs = copies(kind, 3 * 4096 + 5)
    plan = _Plan(PLAN["points"], PLAN["pairs"], PLAN["triples"])
    one = _Pass(plan, dict.fromkeys(plan.members, torch.float32), torch.float32, len(xs[0]))
    in_c, in_torch = one.in_c(xs), one.in_torch(xs)
    for i in plan.points:
        c, t = in_c.points[i], in_torch.points[i]
        assert c[0] == t[0] and c[3:] == t[3:]
        assert close(c[1], t[1], 1e-5) or abs(c[1] - t[1]) < 1e-7 * max(abs(c[3]), abs(c[4]))
        assert close(c[2], t[2], 1e-5)
    for p in plan.pairs:
        assert in_c.same[p] == in_torch.same[p]
        assert close(in_c.sq[p], in_torch.sq[p], 1e-5)
    for t in plan.triples:
        assert close(in_c.dots[t], in_torch.dots[t], 1e-4) or abs(in_c.dots[t]) < 1e-9


def test_chunks_the_kernel_cannot_read_go_to_torch() -> None:
    x = torch.zeros(8)
    assert not native_fits([x, torch.zeros(8, dtype=torch.float64)])
    assert not native_fits([x, torch.zeros(9)])
    assert not native_fits([x, torch.zeros(16)[::2]])
    with pytest.raises(ValueError):
        native_position([x, torch.zeros(4, 2)], [0], [], [])
    with pytest.raises(ValueError):
        native_position([x, x], [2], [], [])  # a member that is not there
