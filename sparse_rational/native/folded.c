/* Prediction of folded models in plain C (no PyTorch, no Python API): loaded with ctypes.
 *
 * Two pieces, both on the hot path of `sparse-rational predict` for models on static vectors:
 *
 * 1. sr_states: the recurrence of sparse_rational/folded.py over whole documents,
 *        c_j(t) = f_j(x_t) c_j(t-1) + u_j(x_t) c_{j-1}(t-1)     (c_{j-1} = 1 at a first state)
 *    over the N states of the folded table, read out as final / mean / max. The arithmetic
 *    is the numpy path's, operation for operation, in float32 (f*c and u*c rounded, then
 *    added; the build disables contraction into fused multiply-adds), so both paths give
 *    the same bits; the numpy path's q_0 columns of ones are not computed here.
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

/* One token: next_j = f_j c_j + u_j p_j over the N states, p_j = c_{j-1}, except at a
 * WFSA's first state, where p_j = 1 (its q_0, which the numpy path keeps as a column of
 * ones), chosen by a bit mask (keep_j: all ones, or zero at a first state) so that the
 * loop vectorises; READ folds v = next_j into the read-out. */
#define STEP(READ)                                                                            \
    for (int64_t j = 0; j < n; j++) {                                                         \
        uint32_t bits;                                                                        \
        memcpy(&bits, c + j - 1, 4);                                                          \
        bits = (bits & keep[j]) | (ONE_BITS & ~keep[j]);                                      \
        float p, a = f[j] * c[j];                                                             \
        memcpy(&p, &bits, 4);                                                                 \
        float v = a + u[j] * p;                                                               \
        next[j] = v;                                                                          \
        READ;                                                                                 \
    }

static const uint32_t ONE_BITS = 0x3f800000u; /* 1.0f */

/* Read `ndocs` documents, `lengths[d]` token ids each, one after another in `ids`, with
 * FU the [vocab, 2n] table of every token's f (n floats) then u (n floats), first[j] != 0
 * at each WFSA's first state. out: [ndocs, n], every document's read-out states.
 * 0, or -3 for an id outside the table. */
int64_t sr_states(const int64_t *ids, const int64_t *lengths, int64_t ndocs, const float *FU,
                  int64_t vocab, int64_t n, const int32_t *first, int32_t readout, float *out) {
    if (n <= 0 || readout < READ_FINAL || readout > READ_MAX) return -1;
    float *buf = malloc(sizeof(float) * (3 * (size_t)n + 2));
    uint32_t *keep = malloc(sizeof(uint32_t) * (size_t)n);
    if (!buf || !keep) {
        free(buf);
        free(keep);
        return -2;
    }
    for (int64_t j = 0; j < n; j++) keep[j] = first[j] ? 0u : 0xffffffffu;
    /* c and next: n states each after one padding float (c[-1] is read, never used) */
    float *c = buf + 1, *next = buf + n + 2, *pool = buf + 2 * n + 2;
    buf[0] = buf[n + 1] = 1.0f;
    int64_t status = 0;
    for (int64_t d = 0; d < ndocs && status == 0; d++) {
        int64_t len = lengths[d];
        for (int64_t j = 0; j < n; j++) {
            c[j] = 0.0f;
            pool[j] = readout == READ_MAX ? -1.0f / 0.0f : 0.0f;
        }
        for (int64_t t = 0; t < len; t++) {
            int64_t id = ids[t];
            if (id < 0 || id >= vocab) {
                status = -3;
                break;
            }
            if (t + 1 < len && ids[t + 1] >= 0 && ids[t + 1] < vocab) { /* the next row: a random place */
                const char *ahead = (const char *)(FU + ids[t + 1] * 2 * n);
                for (int64_t b = 0; b < (int64_t)sizeof(float) * 2 * n; b += 64) __builtin_prefetch(ahead + b);
            }
            const float *restrict f = FU + id * 2 * n, *restrict u = f + n;
            if (readout == READ_MAX) {
                STEP(pool[j] = v > pool[j] ? v : pool[j])
            } else if (readout == READ_MEAN) {
                STEP(pool[j] += v)
            } else {
                STEP((void)0)
            }
            float *swap = c;
            c = next;
            next = swap;
        }
        float *row = out + d * n;
        if (readout == READ_FINAL) {
            memcpy(row, c, sizeof(float) * (size_t)n);
        } else if (readout == READ_MEAN) {
            float div = (float)(len > 1 ? len : 1);
            for (int64_t j = 0; j < n; j++) row[j] = pool[j] / div;
        } else {
            for (int64_t j = 0; j < n; j++) row[j] = len > 0 ? pool[j] : 0.0f;
        }
        ids += len;
    }
    free(buf);
    free(keep);
    return status;
}

/* ---- 2. the chunk memo ------------------------------------------------------------------ */

/* An open-addressing index of 8-byte slots (the hash's top half and the entry's number + 1;
 * 0: empty) over a dense array of entries in the order added: the index stays small and
 * the frequent chunks, met first, sit together at the start of the entries. */
typedef struct {
    uint32_t tag;
    uint32_t entry; /* 1 + the entry's index; 0: an empty slot */
} sr_slot;

typedef struct {
    uint64_t hash;
    uint64_t head; /* the key's first 8 bytes, zero-padded: a key of 8 or fewer is compared here */
    int64_t start; /* where the key starts in keys */
    int64_t size;  /* its length in bytes */
    int64_t code;
} sr_entry;

typedef struct {
    sr_slot *slot;
    int64_t slots; /* a power of two, at least twice the entries */
    sr_entry *entry;
    int64_t used, entries_cap;
    char *keys;
    int64_t keys_used, keys_cap;
} sr_memo;

/* The first 8 bytes of s[0:n], zero-padded (`end`: how far s may be read). */
static inline uint64_t head_of(const char *s, int64_t n, const char *end) {
    uint64_t w = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (end - s >= 8) { /* one load and a mask, no call to memcpy */
        memcpy(&w, s, 8);
        return n >= 8 ? w : w & ((1ull << (8 * n)) - 1);
    }
#endif
    for (int64_t i = 0; i < n && i < 8; i++) w |= (uint64_t)(unsigned char)s[i] << (8 * i);
    return w;
}

/* A 64-bit hash of s[0:n], 8 bytes at a time (the last ones as head_of reads them, so
 * a key hashes the same wherever it is stored). */
static inline uint64_t hash_bytes(const char *s, int64_t n, const char *end) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)n;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    if (i < n) {
        h = (h ^ head_of(s + i, n - i, end)) * 0xc4ceb9fe1a85ec53ull;
        h ^= h >> 29;
    }
    h = (h ^ (h >> 31)) * 0x94d049bb133111ebull;
    return h ^ (h >> 29);
}

void sr_memo_free(sr_memo *m) {
    if (!m) return;
    free(m->slot);
    free(m->entry);
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
    m->entries_cap = 1 << 11;
    m->entry = malloc(sizeof(sr_entry) * (size_t)m->entries_cap);
    if (!m->keys || !m->slot || !m->entry) {
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

/* The slot of key s[0:n] with hash h: where it is, or the empty slot where it would go. */
static inline int64_t find(const sr_memo *m, const char *s, int64_t n, uint64_t h, uint64_t head) {
    int64_t mask = m->slots - 1, i = (int64_t)(h & (uint64_t)mask);
    uint32_t tag = (uint32_t)(h >> 32);
    for (;; i = (i + 1) & mask) {
        sr_slot slot = m->slot[i];
        if (!slot.entry) return i;
        if (slot.tag != tag) continue;
        const sr_entry *e = m->entry + slot.entry - 1;
        if (e->size == n && e->head == head && (n <= 8 || memcmp(m->keys + e->start + 8, s + 8, (size_t)(n - 8)) == 0))
            return i;
    }
}

static int grow(sr_memo *m) {
    int64_t slots = m->slots * 2, mask = slots - 1;
    sr_slot *slot = calloc((size_t)slots, sizeof(sr_slot));
    if (!slot) return -2;
    for (int64_t k = 0; k < m->used; k++) { /* the keys are distinct: each takes the first free slot */
        int64_t i = (int64_t)(m->entry[k].hash & (uint64_t)mask);
        while (slot[i].entry) i = (i + 1) & mask;
        slot[i] = (sr_slot){(uint32_t)(m->entry[k].hash >> 32), (uint32_t)(k + 1)};
    }
    free(m->slot);
    m->slot = slot;
    m->slots = slots;
    return 0;
}

/* Remember that chunk s[0:n] has `code` (a chunk already there keeps its code): 1 added,
 * 0 there already, -1 bad input, -2 out of memory. */
int64_t sr_memo_put(sr_memo *m, const char *s, int64_t n, int64_t code) {
    if (n < 0 || code < 0 || m->used >= 0xfffffffell) return -1;
    if (2 * (m->used + 1) > m->slots && grow(m) < 0) return -2;
    uint64_t h = hash_bytes(s, n, s + n), head = head_of(s, n, s + n);
    int64_t i = find(m, s, n, h, head);
    if (m->slot[i].entry) return 0;
    if (m->used == m->entries_cap) {
        sr_entry *entry = realloc(m->entry, sizeof(sr_entry) * (size_t)m->entries_cap * 2);
        if (!entry) return -2;
        m->entry = entry;
        m->entries_cap *= 2;
    }
    if (m->keys_used + n > m->keys_cap) {
        int64_t cap = m->keys_cap;
        while (m->keys_used + n > cap) cap *= 2;
        char *keys = realloc(m->keys, (size_t)cap);
        if (!keys) return -2;
        m->keys = keys;
        m->keys_cap = cap;
    }
    memcpy(m->keys + m->keys_used, s, (size_t)n);
    m->entry[m->used] = (sr_entry){h, head, m->keys_used, n, code};
    m->slot[i] = (sr_slot){(uint32_t)(h >> 32), (uint32_t)(m->used + 1)};
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

/* The number of chunks of buf[0:n] (see sr_chunks): the starts of runs of non-separators,
 * counted without a branch per byte (only the rare lead bytes of long separators branch). */
int64_t sr_count_chunks(const char *buf, int64_t n) {
    init_kind();
    const unsigned char *s = (const unsigned char *)buf;
    int64_t count = 0, i = 0;
    int64_t before = 1; /* was the previous byte a separator (the start counts as one) */
    while (i < n) {
        unsigned char k = KIND[s[i]];
        int64_t w = 1, sep = k == 1;
        if (k == 2) {
            w = space_at(s + i, n - i);
            sep = w > 0;
            w = w ? w : 1;
        }
        count += before & !sep;
        before = sep;
        i += w;
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
        int64_t start = i++;
        while (i < n && !space_len(s + i, n - i)) i++;
        if (count >= cap) return -1;
        const char *key = buf + start, *end = buf + n;
        int64_t size = i - start, slot = find(m, key, size, hash_bytes(key, size, end), head_of(key, size, end));
        if (m->slot[slot].entry) {
            codes[count++] = m->entry[m->slot[slot].entry - 1].code;
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

/* ---- 3. the tokenizer's regular expression, for ASCII text ------------------------------ */
/* sr_tokens: the tokens that data/tokenize.py's _TOKEN_RE.findall finds in s[0:n], written
 * to out one after another, each followed by the byte SEP (\x01, which no token holds: the
 * tokenizer's text has none), when s is ASCII: the same alternatives tried in the same
 * order at each position, each with the regular expression's greedy matching (worked out
 * alternative by alternative in the comments below); whitespace (Python's \s: space,
 * \t..\r, \x1c..\x1f) separates tokens and is never part of one. Returns the number of
 * bytes written, -4 at a byte that is not ASCII or a SEP (the caller runs the regular
 * expression), -1 when `cap` bytes are too few (2 n always suffice). tests/test_native.py checks it against
 * findall on every distinct chunk of the shared corpora and on random text. */

enum { SEP = 0x01 };

static inline int is_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
static inline int is_letter(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline int is_wspace(unsigned char c) { return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f); }

/* the end of the run of letters and digits that starts at p (p itself if none) */
static inline int64_t run_end(const unsigned char *s, int64_t n, int64_t p) {
    while (p < n && is_alnum(s[p])) p++;
    return p;
}

static inline int equals(const unsigned char *s, int64_t len, const char *word) {
    return (int64_t)strlen(word) == len && memcmp(s, word, (size_t)len) == 0;
}

static int in_list(const unsigned char *s, int64_t len, const char *const *words) {
    for (; *words; words++)
        if (equals(s, len, *words)) return 1;
    return 0;
}

static const char *const ABBREVIATIONS[] = {"mr",   "mrs", "ms",  "dr",  "jr",  "sr",  "st",  "vs",  "etc",
                                            "inc",  "ltd", "co",  "corp", "mt", "prof", "gen", "jan", "feb",
                                            "aug",  "sep", "sept", "oct", "nov", "dec", NULL};
static const char *const CLITICS[] = {"s", "re", "ve", "ll", "d", "m", "em", "n", NULL}; /* and \d0s */
static const char *const NOT_JOINED[] = {"s", "re", "ve", "ll", "d", "m", NULL};       /* words: o'clock */

/* the length of the token that starts at p (s[p] is not whitespace): always >= 1 */
static int64_t token_at(const unsigned char *s, int64_t n, int64_t p) {
    int64_t w = run_end(s, n, p) - p; /* the run of letters and digits at p */
    /* https?://[^\s<>"']+ */
    int64_t scheme = (n - p >= 8 && memcmp(s + p, "https://", 8) == 0) ? 8
                     : (n - p >= 7 && memcmp(s + p, "http://", 7) == 0) ? 7
                                                                         : 0;
    if (scheme) {
        int64_t r = p + scheme;
        while (r < n && !is_wspace(s[r]) && s[r] != '<' && s[r] != '>' && s[r] != '"' && s[r] != '\'') r++;
        if (r > p + scheme) return r - p;
    }
    /* (?=[^\W_]++\.)(?:[^\W_]+\.)+(?:com|org|net|edu|gov)(?![^\W_]): after as many
     * "run." groups as there are, then one fewer, ..., a domain ending */
    if (w > 0 && p + w < n && s[p + w] == '.') {
        int64_t ends[64], k = 0, r = p;
        while (k < 64) {
            int64_t e = run_end(s, n, r);
            if (e == r || e >= n || s[e] != '.') break;
            ends[k++] = r = e + 1;
        }
        if (k == 64) return -1; /* not reached on text without whitespace this long; the caller falls back */
        for (int64_t j = k; j >= 1; j--) {
            int64_t t = ends[j - 1];
            if (n - t >= 3 &&
                (memcmp(s + t, "com", 3) == 0 || memcmp(s + t, "org", 3) == 0 || memcmp(s + t, "net", 3) == 0 ||
                 memcmp(s + t, "edu", 3) == 0 || memcmp(s + t, "gov", 3) == 0) &&
                (t + 3 == n || !is_alnum(s[t + 3])))
                return t + 3 - p;
        }
    }
    /* (?:[^\W\d_]\.)+[^\W\d_](?![^\W_])\.? : u.s.  e.g.  i.e */
    {
        int64_t k = 0;
        while (p + 2 * k + 1 < n && is_letter(s[p + 2 * k]) && s[p + 2 * k + 1] == '.') k++;
        for (int64_t j = k; j >= 1; j--) {
            int64_t t = p + 2 * j;
            if (t < n && is_letter(s[t]) && (t + 1 == n || !is_alnum(s[t + 1]))) {
                int64_t e = t + 1;
                if (e < n && s[e] == '.') e++;
                return e - p;
            }
        }
    }
    /* (?=[^\W_]++\.)(?:mr|...)\.(?![^\W_]) : the whole run is an abbreviation */
    if (w > 0 && p + w < n && s[p + w] == '.' && in_list(s + p, w, ABBREVIATIONS) &&
        (p + w + 1 == n || !is_alnum(s[p + w + 1])))
        return w + 1;
    /* (?=[^\W_]++')[^\W_]+(?=n't(?![^\W_])) : "do" of "don't" (the run minus its n) */
    if (w >= 2 && s[p + w - 1] == 'n' && n - (p + w) >= 2 && s[p + w] == '\'' && s[p + w + 1] == 't' &&
        (p + w + 2 == n || !is_alnum(s[p + w + 2])))
        return w - 1;
    /* n't(?![^\W_]) */
    if (n - p >= 3 && memcmp(s + p, "n't", 3) == 0 && (p + 3 == n || !is_alnum(s[p + 3]))) return 3;
    /* '(?:s|re|ve|ll|d|m|em|n|\d0s)(?![^\W_]) : the run after the apostrophe is one of them */
    if (s[p] == '\'') {
        int64_t r = run_end(s, n, p + 1) - (p + 1);
        if (in_list(s + p + 1, r, CLITICS) ||
            (r == 3 && is_digit(s[p + 1]) && s[p + 2] == '0' && s[p + 3] == 's'))
            return 1 + r;
    }
    /* \d+(?:[.,:/]\d+)+ */
    if (is_digit(s[p])) {
        int64_t r = p, groups = 0;
        while (r < n && is_digit(s[r])) r++;
        while (r + 1 < n && (s[r] == '.' || s[r] == ',' || s[r] == ':' || s[r] == '/') && is_digit(s[r + 1])) {
            r++;
            while (r < n && is_digit(s[r])) r++;
            groups++;
        }
        if (groups) return r - p;
    }
    /* (?=[^\W_]++/)[^\W_]+(?:/[^\W_]+)+(?![^\W_]) : and/or */
    if (w > 0 && p + w + 1 < n && s[p + w] == '/' && is_alnum(s[p + w + 1])) {
        int64_t r = p + w;
        while (r + 1 < n && s[r] == '/' && is_alnum(s[r + 1])) r = run_end(s, n, r + 1);
        return r - p;
    }
    /* [^\W_]+(?:(?:-|'(?!(?:s|re|ve|ll|d|m)(?![^\W_])))[^\W_]+)* : words, with inner hyphens
     * and apostrophes that are not a clitic's */
    if (w > 0) {
        int64_t r = p + w;
        for (;;) {
            if (r + 1 >= n || !is_alnum(s[r + 1])) break;
            if (s[r] == '-') {
                r = run_end(s, n, r + 1);
            } else if (s[r] == '\'') {
                int64_t e = run_end(s, n, r + 1);
                if (in_list(s + r + 1, e - (r + 1), NOT_JOINED)) break;
                r = e;
            } else {
                break;
            }
        }
        return r - p;
    }
    /* \.{2,} | -{2,} | [!?]{2,} | \*{2,} */
    {
        unsigned char c = s[p];
        int64_t r = p + 1;
        if (c == '.' || c == '-' || c == '*') {
            while (r < n && s[r] == c) r++;
        } else if (c == '!' || c == '?') {
            while (r < n && (s[r] == '!' || s[r] == '?')) r++;
        }
        if (r - p >= 2) return r - p;
    }
    /* `` | '' */
    if (n - p >= 2 && ((s[p] == '`' && s[p + 1] == '`') || (s[p] == '\'' && s[p + 1] == '\''))) return 2;
    return 1; /* \S */
}

int64_t sr_tokens(const char *text, int64_t n, char *out, int64_t cap) {
    const unsigned char *s = (const unsigned char *)text;
    for (int64_t i = 0; i < n; i++)
        if (s[i] >= 0x80 || s[i] == SEP) return -4;
    int64_t k = 0, p = 0;
    while (p < n) {
        if (is_wspace(s[p])) {
            p++;
            continue;
        }
        int64_t m = token_at(s, n, p);
        if (m < 0 || k + m + 1 > cap) return -1;
        memcpy(out + k, s + p, (size_t)m);
        out[k + m] = SEP;
        k += m + 1;
        p += m;
    }
    return k;
}

/* ---- 4. new chunks' tokens, looked up in the vocabulary ---------------------------------- */

/* Put keys[offsets[i] : offsets[i + 1]] with code codes[i], for i < count (a key already
 * there keeps its code): the vocabulary, token -> id. 0, -1 bad input, -2 out of memory. */
int64_t sr_memo_put_many(sr_memo *m, const char *keys, const int64_t *offsets, const int64_t *codes, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        int64_t put = sr_memo_put(m, keys + offsets[i], offsets[i + 1] - offsets[i], codes[i]);
        if (put < 0) return put;
    }
    return 0;
}

/* The code of s[0:n] (`end`: how far s may be read), `missing` if the memo lacks it. */
static inline int64_t lookup(const sr_memo *m, const char *s, int64_t n, const char *end, int64_t missing) {
    sr_slot slot = m->slot[find(m, s, n, hash_bytes(s, n, end), head_of(s, n, end))];
    return slot.entry ? m->entry[slot.entry - 1].code : missing;
}

/* What data/tokenize.py's BatchTokenizer._learn makes of each new chunk j < m, the bytes
 * buf[start[j] : start[j] + size[j]], with a vocabulary `vocab` (token -> id; `unk` for
 * a token it lacks): sizes[j] tokens, the chunk itself when it is all ASCII letters and
 * digits, else sr_tokens' tokens of it (no token spans whitespace, and a chunk has none,
 * so a chunk alone splits as it does in the text), their ids appended to ids. A chunk with
 * a byte that is not ASCII or a \x00 (or a domain name of 64 dots) gets sizes[j] = -1 and
 * no ids: the caller learns it in Python. Returns the number of ids written, -1 when `cap`
 * is too small (the chunks' bytes always suffice: a token is at least one byte). */
int64_t sr_learn(const sr_memo *vocab, const char *buf, int64_t n, const int64_t *start, const int64_t *size,
                 int64_t m, int64_t unk, int64_t *sizes, int64_t *ids, int64_t cap) {
    const char *end = buf + n;
    int64_t k = 0;
    for (int64_t j = 0; j < m; j++) {
        const unsigned char *s = (const unsigned char *)buf + start[j];
        int64_t len = size[j], simple = 1, i = 0;
        for (; i < len && s[i] < 0x80 && s[i] != 0; i++) simple &= is_alnum(s[i]);
        sizes[j] = -1;
        if (i < len) continue;
        if (simple) {
            if (k >= cap) return -1;
            ids[k++] = lookup(vocab, (const char *)s, len, end, unk);
            sizes[j] = 1;
            continue;
        }
        int64_t first = k, p = 0;
        while (p < len) {
            int64_t t = token_at(s, len, p);
            if (t < 0) break;
            if (k >= cap) return -1;
            ids[k++] = lookup(vocab, (const char *)s + p, t, end, unk);
            p += t;
        }
        if (p < len) {
            k = first; /* left to Python */
            continue;
        }
        sizes[j] = k - first;
    }
    return k;
}
