/* Prediction of folded models in plain C (no PyTorch, no Python API): loaded with ctypes.
 *
 * Two pieces, both on the hot path of `sparse-rational predict` for models on static vectors:
 *
 * 1. sr_states: the recurrence of sparse_rational/folded.py over whole documents,
 *        c_k(t) = f_k(x_t) c_k(t-1) + u_k(x_t) c_{k-1}(t-1)
 *    over the M columns of the folded table (every WFSA's q_0 column, with f = 1 and
 *    u = 0, then its states), read out as final / mean / max. The arithmetic is the numpy
 *    path's, operation for operation, in float32 (f*c and u*c rounded, then added; the
 *    build disables contraction into fused multiply-adds), so both paths give the same bits.
 *
 * 2. A memo of text chunks to integer codes, and sr_chunks, which splits UTF-8 text into
 *    chunks and looks every chunk up. It splits where the tokenizer of data/tokenize.py
 *    would see whitespace after its normalisation: at the characters for which Python's
 *    str.isspace() is true, and at those its translation table turns into a space (the
 *    control characters U+0001..U+001F and U+FFFD). The chunks it has not seen get the next
 *    codes and are returned to Python, which normalises and tokenises each of them once.
 *
 * Every function returns a negative number on bad input or exhausted memory; the caller
 * raises. Nothing here keeps global state; a memo is used by one thread at a time.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- 1. the recurrence --------------------------------------------------------------- */

enum { READ_FINAL = 0, READ_MEAN = 1, READ_MAX = 2 };

static void step(const float *restrict f, const float *restrict u, const float *restrict c,
                 float *restrict next, int64_t cols) {
    next[0] = f[0] * c[0];
    for (int64_t k = 1; k < cols; k++) {
        float a = f[k] * c[k];
        float b = u[k] * c[k - 1];
        next[k] = a + b;
    }
}

/* Read `ndocs` documents, `lengths[i]` token ids each, one after another in `ids`.
 * F, U: [vocab, cols] tables; real: the `nreal` columns that are states (the rest are q_0
 * columns). out: [ndocs, nreal], the read-out state of every document. */
int64_t sr_states(const int64_t *ids, const int64_t *lengths, int64_t ndocs, const float *F,
                  const float *U, int64_t vocab, int64_t cols, const int64_t *real, int64_t nreal,
                  int32_t readout, float *out) {
    if (cols <= 0 || readout < READ_FINAL || readout > READ_MAX) return -1;
    float *buf = malloc(sizeof(float) * 3 * (size_t)cols);
    if (!buf) return -2;
    float *c = buf, *next = buf + cols, *pool = buf + 2 * cols;
    for (int64_t d = 0; d < ndocs; d++) {
        int64_t n = lengths[d];
        for (int64_t k = 0; k < cols; k++) c[k] = 1.0f;
        for (int64_t j = 0; j < nreal; j++) c[real[j]] = 0.0f;
        for (int64_t k = 0; k < cols; k++) pool[k] = readout == READ_MAX ? -1.0f / 0.0f : 0.0f;
        for (int64_t t = 0; t < n; t++) {
            int64_t id = ids[t];
            if (id < 0 || id >= vocab) {
                free(buf);
                return -3;
            }
            step(F + id * cols, U + id * cols, c, next, cols);
            if (readout == READ_MAX) {
                for (int64_t k = 0; k < cols; k++) pool[k] = next[k] > pool[k] ? next[k] : pool[k];
            } else if (readout == READ_MEAN) {
                for (int64_t k = 0; k < cols; k++) pool[k] += next[k];
            }
            float *swap = c;
            c = next;
            next = swap;
        }
        float *row = out + d * nreal;
        if (readout == READ_FINAL) {
            for (int64_t j = 0; j < nreal; j++) row[j] = c[real[j]];
        } else if (readout == READ_MEAN) {
            float len = (float)(n > 1 ? n : 1);
            for (int64_t j = 0; j < nreal; j++) row[j] = pool[real[j]] / len;
        } else {
            for (int64_t j = 0; j < nreal; j++) row[j] = n > 0 ? pool[real[j]] : 0.0f;
        }
        ids += n;
    }
    free(buf); /* c and next swap between its first two thirds */
    return 0;
}

/* ---- 2. the chunk memo ------------------------------------------------------------------ */

typedef struct {
    uint64_t hash; /* 0: an empty slot */
    int64_t start; /* where the key starts in keys */
    int64_t size;  /* its length in bytes */
    int64_t code;
} sr_slot; /* one cache miss per lookup: the slot, then the key (the keys are few and hot) */

typedef struct {
    sr_slot *slot;
    int64_t slots; /* a power of two */
    int64_t used;
    char *keys;
    int64_t keys_used, keys_cap;
} sr_memo;

static uint64_t hash_bytes(const unsigned char *s, int64_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int64_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    h ^= h >> 29;
    return h ? h : 1;
}

void sr_memo_free(sr_memo *m) {
    if (!m) return;
    free(m->slot);
    free(m->keys);
    free(m);
}

sr_memo *sr_memo_new(void) {
    sr_memo *m = calloc(1, sizeof(sr_memo));
    if (!m) return NULL;
    m->keys_cap = 1 << 16;
    m->keys = malloc((size_t)m->keys_cap);
    m->slots = 1 << 12;
    m->slot = calloc((size_t)m->slots, sizeof(sr_slot));
    if (!m->keys || !m->slot) {
        sr_memo_free(m);
        return NULL;
    }
    return m;
}

void sr_memo_clear(sr_memo *m) {
    memset(m->slot, 0, sizeof(sr_slot) * (size_t)m->slots);
    m->used = 0;
    m->keys_used = 0;
}

int64_t sr_memo_size(const sr_memo *m) { return m->used; }

/* The slot of key s[0:n]: where it is, or the empty slot where it would go. */
static inline int64_t find(const sr_memo *m, const char *s, int64_t n, uint64_t h) {
    int64_t mask = m->slots - 1, i = (int64_t)(h & (uint64_t)mask);
    const sr_slot *slot = m->slot;
    while (slot[i].hash) {
        if (slot[i].hash == h && slot[i].size == n && memcmp(m->keys + slot[i].start, s, (size_t)n) == 0) return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int grow(sr_memo *m) {
    sr_slot *old = m->slot;
    int64_t count = m->slots;
    sr_slot *slot = calloc((size_t)count * 2, sizeof(sr_slot));
    if (!slot) return -2;
    m->slot = slot;
    m->slots = count * 2;
    for (int64_t i = 0; i < count; i++) {
        if (!old[i].hash) continue;
        int64_t j = find(m, m->keys + old[i].start, old[i].size, old[i].hash);
        slot[j] = old[i];
    }
    free(old);
    return 0;
}

/* Remember that chunk s[0:n] has `code` (a chunk already there keeps its code). */
int64_t sr_memo_put(sr_memo *m, const char *s, int64_t n, int64_t code) {
    if (n < 0 || code < 0) return -1;
    if (2 * (m->used + 1) > m->slots && grow(m) < 0) return -2;
    uint64_t h = hash_bytes((const unsigned char *)s, n);
    int64_t i = find(m, s, n, h);
    if (m->slot[i].hash) return 0;
    if (m->keys_used + n > m->keys_cap) {
        int64_t cap = m->keys_cap;
        while (m->keys_used + n > cap) cap *= 2;
        char *keys = realloc(m->keys, (size_t)cap);
        if (!keys) return -2;
        m->keys = keys;
        m->keys_cap = cap;
    }
    memcpy(m->keys + m->keys_used, s, (size_t)n);
    m->slot[i] = (sr_slot){h, m->keys_used, n, code};
    m->keys_used += n;
    m->used++;
    return 1;
}

/* Bytes of the separator at s[0:n] in UTF-8 (a character for which Python's str.isspace()
 * is true, or one that tokenize.py turns into a space), 0 if s does not start with one. */
static int64_t space_at(const unsigned char *s, int64_t n) {
    unsigned char a = s[0];
    if (a == ' ' || (a >= 0x01 && a <= 0x1f)) return 1;
    if (a < 0xc2) return 0;
    if (a == 0xc2) return n >= 2 && (s[1] == 0x85 || s[1] == 0xa0) ? 2 : 0;
    if (n < 3) return 0;
    if (a == 0xe1) return s[1] == 0x9a && s[2] == 0x80 ? 3 : 0;                       /* U+1680 */
    if (a == 0xe2 && s[1] == 0x80)                                                     /* U+2000..U+202F */
        return (s[2] >= 0x80 && s[2] <= 0x8a) || s[2] == 0xa8 || s[2] == 0xa9 || s[2] == 0xaf ? 3 : 0;
    if (a == 0xe2) return s[1] == 0x81 && s[2] == 0x9f ? 3 : 0;                        /* U+205F */
    if (a == 0xe3) return s[1] == 0x80 && s[2] == 0x80 ? 3 : 0;                        /* U+3000 */
    if (a == 0xef) return s[1] == 0xbf && s[2] == 0xbd ? 3 : 0;                        /* U+FFFD */
    return 0;
}

/* What a byte can start: 1 an ASCII separator, 2 perhaps a longer one (the lead bytes of
 * U+0085, U+00A0, U+1680, U+2000..U+3000, U+FFFD), 0 neither. */
static unsigned char KIND[256];
static int kind_ready = 0;

static void init_kind(void) {
    if (kind_ready) return; /* a benign race: every thread writes the same bytes */
    for (int b = 0; b < 256; b++) {
        unsigned char k = 0;
        if (b == ' ' || (b >= 0x01 && b <= 0x1f)) k = 1;
        if (b == 0xc2 || b == 0xe1 || b == 0xe2 || b == 0xe3 || b == 0xef) k = 2;
        KIND[b] = k;
    }
    kind_ready = 1;
}

/* Bytes of the whitespace character at s[0:n], or 0. */
static inline int64_t space_len(const unsigned char *s, int64_t n) {
    unsigned char k = KIND[s[0]];
    return k == 0 ? 0 : k == 1 ? 1 : space_at(s, n);
}

/* The number of chunks of buf[0:n] (see sr_chunks). */
int64_t sr_count_chunks(const char *buf, int64_t n) {
    init_kind();
    const unsigned char *s = (const unsigned char *)buf;
    int64_t count = 0, i = 0;
    int inside = 0;
    while (i < n) {
        int64_t w = space_len(s + i, n - i);
        if (w) {
            inside = 0;
            i += w;
        } else {
            count += !inside;
            inside = 1;
            i++;
        }
    }
    return count;
}

/* Split buf[0:n] at whitespace and look every chunk up: codes[j] is the code of chunk j.
 * A chunk the memo lacks is added with the next code (next_code, next_code + 1, ... in the
 * order first met), and its byte offset and length go to new_start / new_size (*added
 * counts them): the caller tokenises it. Returns the number of chunks, -1 when there are
 * more than `cap` (sr_count_chunks says how many), -2 when out of memory. */
int64_t sr_chunks(sr_memo *m, const char *buf, int64_t n, int64_t *codes, int64_t *new_start,
                  int64_t *new_size, int64_t cap, int64_t *added, int64_t next_code) {
    init_kind();
    const unsigned char *s = (const unsigned char *)buf;
    int64_t count = 0, fresh = 0, i = 0;
    while (i < n) {
        int64_t w = space_len(s + i, n - i);
        if (w) {
            i += w;
            continue;
        }
        int64_t start = i;
        uint64_t h = 1469598103934665603ull; /* hash_bytes, byte by byte as the chunk is read */
        do {
            h = (h ^ s[i]) * 1099511628211ull;
            i++;
        } while (i < n && !space_len(s + i, n - i));
        h ^= h >> 29;
        h = h ? h : 1;
        if (count >= cap) return -1;
        int64_t size = i - start, slot = find(m, buf + start, size, h);
        if (m->slot[slot].hash) {
            codes[count++] = m->slot[slot].code;
            continue;
        }
        int64_t put = sr_memo_put(m, buf + start, size, next_code + fresh);
        if (put < 0) return -2;
        codes[count++] = next_code + fresh;
        new_start[fresh] = start;
        new_size[fresh] = size;
        fresh++;
    }
    *added = fresh;
    return count;
}
