/* Statistics of 4-bit GPTQ weights read straight from their packed words, never dequantized.

   A GPTQ weight packs eight 4-bit codes q of consecutive inputs into each int32 of ``qweight``
   (in/8, out); its value is (q - z) * s with one zero code z and one scale s per group of
   inputs and output. With 16-bit scales, (q - z) * s is exact in float32 (at most 16
   significant bits), so a group's sum of values is s * sum(q - z) and its sum of squared
   deviations s^2 * (size * sum((q - z)^2) - sum(q - z)^2) / size, exactly, from integer sums
   of the codes. Those sums, the smallest and largest code and the count of codes equal to z
   are all that is read per group: SIMD byte arithmetic on the packed words, at memory speed.
   Python merges the groups' moments (count, mean, M2) the way it merges chunks (Chan et al.).

   ``moments(words, row_stride, rows, columns, rows_per_group, zero_codes, scales)``:
   ``words`` the address of the first int32 of a slab of ``qweight`` (``rows`` packed rows of
   ``columns`` words, rows ``row_stride`` bytes apart), ``zero_codes`` int32 and ``scales``
   float32 (groups, columns), contiguous. Returns (count, mean, m2, min, max, zeros). The
   caller checks every address and size (``nibble_stats.py``). The GIL is released. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* CKPT_GUI_NO_AVX2: build the scalar loops alone (to check them on an AVX2 machine). */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(CKPT_GUI_NO_AVX2)
#define HAVE_AVX2_PATH 1
#include <immintrin.h>
#endif

typedef struct {
    double n, mean, m2, lo, hi, zeros;
} Moments;

typedef struct {
    uint32_t s1, s2, eq;  /* sum of codes, of their squares, codes equal to the zero code */
    uint8_t lo, hi;       /* smallest and largest code */
} GroupSums;

static void merge(Moments *a, double n, double mean, double m2) {
    if (n == 0) return;
    double total = a->n + n, delta = mean - a->mean;
    a->mean += delta * n / total;
    a->m2 += m2 + delta * delta * a->n * n / total;
    a->n = total;
}

/* One group of one output: its moments from the integer sums. */
static void fold(Moments *out, const GroupSums *g, int64_t size, int32_t z, float scale) {
    double s = (double)scale;
    int64_t d1 = (int64_t)g->s1 - size * z;
    int64_t d2 = (int64_t)g->s2 - 2 * (int64_t)z * (int64_t)g->s1 + size * (int64_t)z * z;
    double mean = s * (double)d1 / (double)size;
    double m2 = s * s * (double)(size * d2 - d1 * d1) / (double)size;
    double a = (double)((int)g->lo - z) * s, b = (double)((int)g->hi - z) * s;
    double lo = a < b ? a : b, hi = a < b ? b : a;
    if (lo < out->lo) out->lo = lo;
    if (hi > out->hi) out->hi = hi;
    out->zeros += s == 0.0 ? (double)size : (double)g->eq;
    merge(out, (double)size, mean, m2);
}

static const uint8_t SQUARES[16] = {0, 1, 4, 9, 16, 25, 36, 49, 64, 81, 100, 121, 144, 169, 196,
                                    225};

/* One output's group, word by word. */
static void group_scalar(const uint8_t *words, int64_t row_stride, int64_t r0, int64_t r1,
                         int64_t column, int32_t z, GroupSums *g) {
    memset(g, 0, sizeof(*g));
    g->lo = 15;
    for (int64_t r = r0; r < r1; r++) {
        uint32_t w;
        memcpy(&w, words + r * row_stride + 4 * column, 4);
        for (int k = 0; k < 32; k += 4) {
            uint8_t q = (w >> k) & 15;
            g->s1 += q;
            g->s2 += SQUARES[q];
            g->eq += q == z;
            if (q < g->lo) g->lo = q;
            if (q > g->hi) g->hi = q;
        }
    }
}

#ifdef HAVE_AVX2_PATH
/* Eight outputs' group at once: each 32-byte load is one packed row of eight words. Byte
   counters are widened before they can overflow (every 16 rows). */
__attribute__((target("avx2"))) static void group_avx2(const uint8_t *words, int64_t row_stride,
                                                        int64_t r0, int64_t r1, int64_t column,
                                                        const int32_t *z, GroupSums *g) {
    const __m256i low4 = _mm256_set1_epi8(15), ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    const __m256i squares = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)SQUARES));
    /* Each output's zero code in its word's four bytes (a code of 16 never matches). */
    __m256i zb = _mm256_mullo_epi32(
        _mm256_min_epi32(_mm256_loadu_si256((const __m256i *)z), _mm256_set1_epi32(255)),
        _mm256_set1_epi32(0x01010101));
    __m256i s1 = _mm256_setzero_si256(), s2 = _mm256_setzero_si256();
    __m256i eq = _mm256_setzero_si256();
    __m256i lo = _mm256_set1_epi8(15), hi = _mm256_setzero_si256();
    for (int64_t start = r0; start < r1; start += 16) {
        int64_t stop = start + 16 < r1 ? start + 16 : r1;
        __m256i s1w = _mm256_setzero_si256(), s2w = _mm256_setzero_si256();
        __m256i eqb = _mm256_setzero_si256();
        for (int64_t r = start; r < stop; r++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(words + r * row_stride + 4 * column));
            __m256i a = _mm256_and_si256(v, low4);
            __m256i b = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            s1w = _mm256_add_epi16(s1w, _mm256_maddubs_epi16(_mm256_add_epi8(a, b), ones8));
            s2w = _mm256_add_epi16(s2w, _mm256_maddubs_epi16(_mm256_shuffle_epi8(squares, a), ones8));
            s2w = _mm256_add_epi16(s2w, _mm256_maddubs_epi16(_mm256_shuffle_epi8(squares, b), ones8));
            eqb = _mm256_sub_epi8(eqb, _mm256_cmpeq_epi8(a, zb));
            eqb = _mm256_sub_epi8(eqb, _mm256_cmpeq_epi8(b, zb));
            lo = _mm256_min_epu8(lo, _mm256_min_epu8(a, b));
            hi = _mm256_max_epu8(hi, _mm256_max_epu8(a, b));
        }
        /* 16-bit pairs (at most 16 * 900) to 32-bit words, one per output. */
        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(s1w, ones16));
        s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(s2w, ones16));
        eq = _mm256_add_epi32(eq, _mm256_madd_epi16(_mm256_maddubs_epi16(eqb, ones8), ones16));
    }
    uint32_t a1[8], a2[8], ae[8], al[8], ah[8];
    _mm256_storeu_si256((__m256i *)a1, s1);
    _mm256_storeu_si256((__m256i *)a2, s2);
    _mm256_storeu_si256((__m256i *)ae, eq);
    _mm256_storeu_si256((__m256i *)al, lo);
    _mm256_storeu_si256((__m256i *)ah, hi);
    for (int k = 0; k < 8; k++) {
        uint8_t l = 15, h = 0;
        for (int byte = 0; byte < 32; byte += 8) {
            uint8_t x = (al[k] >> byte) & 255, y = (ah[k] >> byte) & 255;
            if (x < l) l = x;
            if (y > h) h = y;
        }
        g[k].s1 = a1[k], g[k].s2 = a2[k], g[k].eq = ae[k], g[k].lo = l, g[k].hi = h;
    }
}

static int avx2_ok(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return known;
}
#endif

static void slab_moments(const uint8_t *words, int64_t row_stride, int64_t rows, int64_t columns,
                         int64_t rows_per_group, const int32_t *zero_codes, const float *scales,
                         Moments *out) {
    int64_t groups = (rows + rows_per_group - 1) / rows_per_group;
    GroupSums sums[8];
    for (int64_t g = 0; g < groups; g++) {
        int64_t r0 = g * rows_per_group;
        int64_t r1 = r0 + rows_per_group < rows ? r0 + rows_per_group : rows;
        int64_t size = 8 * (r1 - r0);
        const int32_t *z = zero_codes + g * columns;
        const float *s = scales + g * columns;
        int64_t c = 0;
#ifdef HAVE_AVX2_PATH
        if (avx2_ok()) {
            for (; c + 8 <= columns; c += 8) {
                group_avx2(words, row_stride, r0, r1, c, z + c, sums);
                for (int k = 0; k < 8; k++) fold(out, &sums[k], size, z[c + k], s[c + k]);
            }
        }
#endif
        for (; c < columns; c++) {
            group_scalar(words, row_stride, r0, r1, c, z[c], sums);
            fold(out, sums, size, z[c], s[c]);
        }
    }
}

/* AWQ: eight outputs per word (nibble j holds output 8c + ORDER[j]), one input per packed
   row; a group is ``rows_per_group`` consecutive rows. Per nibble position of each word,
   over a group's rows: the same sums as GPTQ's. */
static const int AWQ_ORDER[8] = {0, 2, 4, 6, 1, 3, 5, 7};

typedef struct {
    uint32_t s1[8], s2[8], eq[8];
    uint8_t lo[8], hi[8];
} WordSums;

static void word_group_scalar(const uint8_t *words, int64_t row_stride, int64_t r0, int64_t r1,
                              int64_t c, const int32_t *z, WordSums *w) {
    memset(w, 0, sizeof(*w));
    memset(w->lo, 15, sizeof(w->lo));
    for (int64_t r = r0; r < r1; r++) {
        uint32_t x;
        memcpy(&x, words + r * row_stride + 4 * c, 4);
        for (int j = 0; j < 8; j++) {
            uint8_t q = (x >> (4 * j)) & 15;
            w->s1[j] += q;
            w->s2[j] += SQUARES[q];
            w->eq[j] += q == z[AWQ_ORDER[j]];
            if (q < w->lo[j]) w->lo[j] = q;
            if (q > w->hi[j]) w->hi[j] = q;
        }
    }
}

#ifdef HAVE_AVX2_PATH
/* Eight words (64 outputs) at once. Byte b of the 32 holds nibbles 2(b % 4) and 2(b % 4) + 1
   of word b / 4. Sums are kept per byte in 16-bit lanes (unpacked within each 128-bit half:
   lane k of the low unpack is byte k or k + 8, of the high one byte k + 8 or k + 16) and
   widened every 128 rows (a square is at most 225); equal-code counts per byte every 255. */
__attribute__((target("avx2"))) static void word_group_avx2(const uint8_t *words,
                                                             int64_t row_stride, int64_t r0,
                                                             int64_t r1, int64_t c,
                                                             const int32_t *z, WordSums *w) {
    const __m256i low4 = _mm256_set1_epi8(15), zero = _mm256_setzero_si256();
    const __m256i squares = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)SQUARES));
    uint8_t zl[32], zh[32];
    for (int b = 0; b < 32; b++) {
        int32_t a = z[8 * (b / 4) + AWQ_ORDER[2 * (b % 4)]];
        int32_t h = z[8 * (b / 4) + AWQ_ORDER[2 * (b % 4) + 1]];
        zl[b] = (uint8_t)(a < 255 ? a : 255), zh[b] = (uint8_t)(h < 255 ? h : 255);
    }
    const __m256i zlo = _mm256_loadu_si256((const __m256i *)zl);
    const __m256i zhi = _mm256_loadu_si256((const __m256i *)zh);
    uint32_t s1[2][32] = {{0}}, s2[2][32] = {{0}}, eq[2][32] = {{0}};
    __m256i mnl = _mm256_set1_epi8(15), mnh = mnl, mxl = zero, mxh = zero;
    for (int64_t start = r0; start < r1; start += 128) {
        int64_t stop = start + 128 < r1 ? start + 128 : r1;
        __m256i acc[2][2][2];  /* [s1 or s2][lo or hi nibbles][low or high unpack] */
        for (int i = 0; i < 8; i++) ((__m256i *)acc)[i] = zero;
        __m256i el = zero, eh = zero;
        for (int64_t r = start; r < stop; r++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(words + r * row_stride + 4 * c));
            __m256i nib[2] = {_mm256_and_si256(v, low4),
                              _mm256_and_si256(_mm256_srli_epi16(v, 4), low4)};
            for (int h = 0; h < 2; h++) {
                __m256i sq = _mm256_shuffle_epi8(squares, nib[h]);
                acc[0][h][0] = _mm256_add_epi16(acc[0][h][0], _mm256_unpacklo_epi8(nib[h], zero));
                acc[0][h][1] = _mm256_add_epi16(acc[0][h][1], _mm256_unpackhi_epi8(nib[h], zero));
                acc[1][h][0] = _mm256_add_epi16(acc[1][h][0], _mm256_unpacklo_epi8(sq, zero));
                acc[1][h][1] = _mm256_add_epi16(acc[1][h][1], _mm256_unpackhi_epi8(sq, zero));
            }
            el = _mm256_sub_epi8(el, _mm256_cmpeq_epi8(nib[0], zlo));
            eh = _mm256_sub_epi8(eh, _mm256_cmpeq_epi8(nib[1], zhi));
            mnl = _mm256_min_epu8(mnl, nib[0]), mxl = _mm256_max_epu8(mxl, nib[0]);
            mnh = _mm256_min_epu8(mnh, nib[1]), mxh = _mm256_max_epu8(mxh, nib[1]);
        }
        uint16_t lanes[16];
        for (int k = 0; k < 2; k++)
            for (int h = 0; h < 2; h++)
                for (int u = 0; u < 2; u++) {
                    _mm256_storeu_si256((__m256i *)lanes, acc[k][h][u]);
                    for (int e = 0; e < 16; e++) {
                        int b = (e < 8 ? e : e + 8) + 8 * u;
                        (k ? s2 : s1)[h][b] += lanes[e];
                    }
                }
        uint8_t bytes[32];
        _mm256_storeu_si256((__m256i *)bytes, el);
        for (int b = 0; b < 32; b++) eq[0][b] += bytes[b];
        _mm256_storeu_si256((__m256i *)bytes, eh);
        for (int b = 0; b < 32; b++) eq[1][b] += bytes[b];
    }
    uint8_t m[4][32];
    _mm256_storeu_si256((__m256i *)m[0], mnl);
    _mm256_storeu_si256((__m256i *)m[1], mnh);
    _mm256_storeu_si256((__m256i *)m[2], mxl);
    _mm256_storeu_si256((__m256i *)m[3], mxh);
    for (int b = 0; b < 32; b++) {
        for (int h = 0; h < 2; h++) {
            WordSums *x = &w[b / 4];
            int j = 2 * (b % 4) + h;
            x->s1[j] = s1[h][b], x->s2[j] = s2[h][b], x->eq[j] = eq[h][b];
            x->lo[j] = m[h][b], x->hi[j] = m[2 + h][b];
        }
    }
}
#endif

static void awq_slab(const uint8_t *words, int64_t row_stride, int64_t rows, int64_t n_words,
                     int64_t rows_per_group, const int32_t *zero_codes, const float *scales,
                     int64_t first, int64_t last, Moments *out) {
    int64_t groups = (rows + rows_per_group - 1) / rows_per_group, outputs = 8 * n_words;
    WordSums sums[8];
    for (int64_t g = 0; g < groups; g++) {
        int64_t r0 = g * rows_per_group;
        int64_t r1 = r0 + rows_per_group < rows ? r0 + rows_per_group : rows;
        const int32_t *z = zero_codes + g * outputs;
        const float *s = scales + g * outputs;
        for (int64_t c = 0; c < n_words;) {
            int64_t n = 1;
#ifdef HAVE_AVX2_PATH
            if (avx2_ok() && c + 8 <= n_words) {
                word_group_avx2(words, row_stride, r0, r1, c, z + 8 * c, sums);
                n = 8;
            } else
#endif
                word_group_scalar(words, row_stride, r0, r1, c, z + 8 * c, sums);
            for (int64_t k = 0; k < n; k++) {
                for (int j = 0; j < 8; j++) {
                    int64_t o = 8 * (c + k) + AWQ_ORDER[j];
                    if (o < first || o >= last) continue;
                    GroupSums one = {sums[k].s1[j], sums[k].s2[j], sums[k].eq[j], sums[k].lo[j],
                                     sums[k].hi[j]};
                    fold(out, &one, r1 - r0, z[o], s[o]);
                }
            }
            c += n;
        }
    }
}

static PyObject *awq_moments(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long words, zero_codes, scales;
    long long row_stride, rows, n_words, rows_per_group, first, last;
    if (!PyArg_ParseTuple(args, "KLLLLKKLL", &words, &row_stride, &rows, &n_words,
                          &rows_per_group, &zero_codes, &scales, &first, &last))
        return NULL;
    if (rows < 0 || n_words < 0 || rows_per_group <= 0 || row_stride < 4 * n_words || first < 0 ||
        last > 8 * n_words || first > last) {
        PyErr_SetString(PyExc_ValueError, "awq_moments: inconsistent sizes");
        return NULL;
    }
    Moments out = {0, 0, 0, INFINITY, -INFINITY, 0};
    Py_BEGIN_ALLOW_THREADS
    awq_slab((const uint8_t *)(uintptr_t)words, row_stride, rows, n_words, rows_per_group,
             (const int32_t *)(uintptr_t)zero_codes, (const float *)(uintptr_t)scales, first, last,
             &out);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(Ldddd L)", (long long)out.n, out.mean, out.m2, out.lo, out.hi,
                         (long long)out.zeros);
}

static PyObject *moments(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long words, zero_codes, scales;
    long long row_stride, rows, columns, rows_per_group;
    if (!PyArg_ParseTuple(args, "KLLLLKK", &words, &row_stride, &rows, &columns, &rows_per_group,
                          &zero_codes, &scales))
        return NULL;
    if (rows < 0 || columns < 0 || rows_per_group <= 0 || row_stride < 4 * columns) {
        PyErr_SetString(PyExc_ValueError, "moments: inconsistent sizes");
        return NULL;
    }
    Moments out = {0, 0, 0, INFINITY, -INFINITY, 0};
    Py_BEGIN_ALLOW_THREADS
    slab_moments((const uint8_t *)(uintptr_t)words, row_stride, rows, columns, rows_per_group,
                 (const int32_t *)(uintptr_t)zero_codes, (const float *)(uintptr_t)scales, &out);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(Ldddd L)", (long long)out.n, out.mean, out.m2, out.lo, out.hi,
                         (long long)out.zeros);
}

static PyMethodDef methods[] = {
    {"moments", moments, METH_VARARGS, "Moments of a slab of 4-bit GPTQ words (see the source)."},
    {"awq_moments", awq_moments, METH_VARARGS, "The same for AWQ's packing (see the source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_nibbles", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__nibbles(void) { return PyModule_Create(&module); }
