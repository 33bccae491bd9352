/* The Prometheus text format writer: families, samples filed under them,
 * and rendering with each family's samples together (see prom.h).
 *
 * Samples are kept in one append-only byte log of records, each a small
 * header (the family id and the text's length) followed by the sample's
 * finished text lines. Appending only means that a mark is two lengths and
 * a rollback is two truncations, so marks nest without allocating.
 *
 * Families are found by name through an open-addressing hash index (a
 * collector declares its families again for every object it writes, so
 * the lookup is the hot path), and each family counts the bytes of its
 * records. Rendering is then two linear passes and no allocation beyond
 * the text: the counts give every family its place in the text, and one
 * walk of the log copies each record to its family's place. */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/prom.h>

typedef struct family {
    char *name;
    char *help; /* NULL: no HELP line */
    moirai_prom_type_t type;
    uint32_t hash;  /* of the name, for the index */
    size_t bytes;   /* text bytes of this family's records in the log */
    size_t out_pos; /* during a render: where its next record goes */
} family_t;

/* The header in front of each record's text in the log. */
typedef struct record_head {
    uint32_t family;
    uint32_t len; /* bytes of text after the header */
} record_head_t;

struct moirai_prom_writer {
    family_t *families;
    size_t nfamilies, families_cap;
    /* The hash index: family ids, -1 for an empty slot; a power of two
     * at least twice the families, or 0 slots before the first. */
    int32_t *index;
    size_t index_cap;
    char *log; /* records: header, text, header, text, ... */
    size_t log_len, log_cap;
    char *text; /* the last render */
    size_t text_cap;
};

/* ---- names, escaping and values ---- */

static bool metric_name_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* Label names as the format allows them, minus the "__" prefix that
 * Prometheus reserves for its own labels. */
static bool label_name_ok(const char *s)
{
    if (!s || !*s || (s[0] == '_' && s[1] == '_'))
        return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
            return false;
    }
    return true;
}

/* The length of `s` escaped: backslash and newline always, the double
 * quote only inside a label value (HELP text keeps it as is). */
static size_t escaped_len(const char *s, bool quote)
{
    size_t n = 0;
    for (; *s; s++)
        n += (*s == '\\' || *s == '\n' || (quote && *s == '"')) ? 2 : 1;
    return n;
}

static char *put_escaped(char *p, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\') {
            *p++ = '\\';
            *p++ = '\\';
        } else if (*s == '\n') {
            *p++ = '\\';
            *p++ = 'n';
        } else if (quote && *s == '"') {
            *p++ = '\\';
            *p++ = '"';
        } else {
            *p++ = *s;
        }
    }
    return p;
}

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* The C locale, so that a program that set LC_NUMERIC to one with a
 * decimal comma still writes "0.5". glibc returns a static object for
 * "C", so this neither allocates nor fails there; if it ever did fail,
 * the calling thread's locale would be used. */
static locale_t c_locale_obj;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale_obj = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static locale_t c_locale(void)
{
    /* pthread_once orders the store above before every reader. */
    pthread_once(&c_locale_once, c_locale_init);
    return c_locale_obj;
}

/* Writes `v` into buf (at least 32 bytes) in the shortest "%.*g" form
 * that reads back as the same double; returns its length. */
static size_t format_double(char *buf, double v)
{
    if (isnan(v))
        return (size_t)snprintf(buf, 32, "NaN");
    if (isinf(v))
        return (size_t)snprintf(buf, 32, v > 0 ? "+Inf" : "-Inf");
    locale_t loc = c_locale(), old = loc ? uselocale(loc) : (locale_t)0;
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (loc)
        uselocale(old);
    return (size_t)n;
}

/* Writes `v` in decimal into buf (at least 21 bytes, NUL added); returns
 * its length. Counters are most samples: this is snprintf's work without
 * its format parsing. */
static size_t format_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

/* ---- storage ---- */

/* Makes room for `more` bytes in the log. */
static int log_reserve(moirai_prom_writer_t *w, size_t more)
{
    if (more > SIZE_MAX - w->log_len)
        return -ENOMEM;
    size_t need = w->log_len + more;
    if (need <= w->log_cap)
        return 0;
    size_t cap = w->log_cap ? w->log_cap : 1024;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *log = moirai_realloc(w->log, cap);
    if (!log)
        return -ENOMEM;
    w->log = log;
    w->log_cap = cap;
    return 0;
}

/* FNV-1a: short names, no adversary (the names are the program's own). */
static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void index_insert(int32_t *index, size_t cap, uint32_t hash, int32_t id)
{
    size_t i = hash & (cap - 1);
    while (index[i] >= 0)
        i = (i + 1) & (cap - 1);
    index[i] = id;
}

/* Refills the index from the families (after a rollback or a reset). */
static void index_rebuild(moirai_prom_writer_t *w)
{
    for (size_t i = 0; i < w->index_cap; i++)
        w->index[i] = -1;
    for (size_t f = 0; f < w->nfamilies; f++)
        index_insert(w->index, w->index_cap, w->families[f].hash, (int32_t)f);
}

/* Makes room in the index for one more family: a bigger table, filled
 * before it replaces the old one, so a failure changes nothing. */
static int index_reserve(moirai_prom_writer_t *w)
{
    if ((w->nfamilies + 1) * 2 <= w->index_cap)
        return 0;
    size_t cap = w->index_cap ? w->index_cap * 2 : 64;
    int32_t *index = moirai_malloc(cap * sizeof(*index));
    if (!index)
        return -ENOMEM;
    for (size_t i = 0; i < cap; i++)
        index[i] = -1;
    for (size_t f = 0; f < w->nfamilies; f++)
        index_insert(index, cap, w->families[f].hash, (int32_t)f);
    moirai_free(w->index);
    w->index = index;
    w->index_cap = cap;
    return 0;
}

/* The id of the family `name` (hash `hash`), or -1. */
static int index_find(const moirai_prom_writer_t *w, const char *name, uint32_t hash)
{
    if (w->index_cap == 0)
        return -1;
    for (size_t i = hash & (w->index_cap - 1); w->index[i] >= 0; i = (i + 1) & (w->index_cap - 1)) {
        const family_t *f = &w->families[w->index[i]];
        if (f->hash == hash && strcmp(f->name, name) == 0)
            return w->index[i];
    }
    return -1;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = moirai_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

int moirai_prom_writer_create(moirai_prom_writer_t **out)
{
    if (!out)
        return -EINVAL;
    moirai_prom_writer_t *w = moirai_calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    *out = w;
    return 0;
}

static void families_truncate(moirai_prom_writer_t *w, size_t n)
{
    while (w->nfamilies > n) {
        family_t *f = &w->families[--w->nfamilies];
        moirai_free(f->name);
        moirai_free(f->help);
    }
}

void moirai_prom_writer_destroy(moirai_prom_writer_t *w)
{
    if (!w)
        return;
    families_truncate(w, 0);
    moirai_free(w->families);
    moirai_free(w->index);
    moirai_free(w->log);
    moirai_free(w->text);
    moirai_free(w);
}

void moirai_prom_writer_reset(moirai_prom_writer_t *w)
{
    if (!w)
        return;
    families_truncate(w, 0);
    index_rebuild(w);
    w->log_len = 0;
}

static bool same_help(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int moirai_prom_writer_family(moirai_prom_writer_t *w, const char *name, moirai_prom_type_t type,
                              const char *help)
{
    if (!w || !name)
        return -EINVAL;
    /* A name found in the index was checked when it was declared: only a
     * new one is validated (a collector declares its families again for
     * every object it writes). */
    uint32_t hash = name_hash(name);
    int found = index_find(w, name, hash);
    if (found >= 0) {
        const family_t *f = &w->families[found];
        return f->type == type && same_help(f->help, help) ? found : -EINVAL;
    }
    if (!metric_name_ok(name) ||
        (type != MOIRAI_PROM_COUNTER && type != MOIRAI_PROM_GAUGE && type != MOIRAI_PROM_HISTOGRAM))
        return -EINVAL;
    /* Ids are ints and record headers hold 32 bits: far beyond any use. */
    if (w->nfamilies >= INT32_MAX)
        return -ENOMEM;
    /* Room first (the array and the index), then the copies: growing
     * either changes no contents, so a failure anywhere leaves the writer
     * as it was. */
    if (w->nfamilies == w->families_cap) {
        size_t cap = w->families_cap ? w->families_cap * 2 : 16;
        family_t *fs = moirai_realloc(w->families, cap * sizeof(*fs));
        if (!fs)
            return -ENOMEM;
        w->families = fs;
        w->families_cap = cap;
    }
    if (index_reserve(w) != 0)
        return -ENOMEM;
    family_t f = {dup_str(name), help ? dup_str(help) : NULL, type, hash, 0, 0};
    if (!f.name || (help && !f.help)) {
        moirai_free(f.name);
        moirai_free(f.help);
        return -ENOMEM;
    }
    w->families[w->nfamilies] = f;
    index_insert(w->index, w->index_cap, hash, (int32_t)w->nfamilies);
    return (int)w->nfamilies++;
}

/* ---- samples ---- */

/* Checks the labels; the "le" label is refused where the writer adds its
 * own (histograms). */
static int labels_ok(const moirai_prom_label_t *labels, size_t n, bool le_reserved)
{
    if (n > 0 && !labels)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!label_name_ok(labels[i].name) || !labels[i].value)
            return -EINVAL;
        if (le_reserved && strcmp(labels[i].name, "le") == 0)
            return -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(labels[i].name, labels[j].name) == 0)
                return -EINVAL;
    }
    return 0;
}

/* The bytes of one sample line: name suffix {labels,le="le"} value\n. */
static size_t line_len(const family_t *f, const char *suffix, const moirai_prom_label_t *labels,
                       size_t n, const char *le, size_t value_len)
{
    size_t len = strlen(f->name) + strlen(suffix) + 1 + value_len + 1;
    size_t count = n + (le ? 1 : 0);
    if (count > 0)
        len += 2 + (count - 1); /* braces and commas */
    for (size_t i = 0; i < n; i++)
        len += strlen(labels[i].name) + 3 + escaped_len(labels[i].value, true);
    if (le)
        len += 2 + 3 + strlen(le);
    return len;
}

static char *put_line(char *p, const family_t *f, const char *suffix,
                      const moirai_prom_label_t *labels, size_t n, const char *le,
                      const char *value, size_t value_len)
{
    p = put(p, f->name, strlen(f->name));
    p = put(p, suffix, strlen(suffix));
    if (n > 0 || le) {
        *p++ = '{';
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                *p++ = ',';
            p = put(p, labels[i].name, strlen(labels[i].name));
            p = put(p, "=\"", 2);
            p = put_escaped(p, labels[i].value, true);
            *p++ = '"';
        }
        if (le) {
            if (n > 0)
                *p++ = ',';
            p = put(p, "le=\"", 4);
            p = put(p, le, strlen(le));
            *p++ = '"';
        }
        *p++ = '}';
    }
    *p++ = ' ';
    p = put(p, value, value_len);
    *p++ = '\n';
    return p;
}

/* Starts a record of `len` text bytes for `family` (room already
 * reserved) and returns where its text goes; the caller fills exactly
 * `len` bytes and then commits with log_len += sizeof head + len. */
static char *record_start(moirai_prom_writer_t *w, int family, size_t len)
{
    record_head_t h = {(uint32_t)family, (uint32_t)len};
    char *p = w->log + w->log_len;
    memcpy(p, &h, sizeof(h));
    return p + sizeof(h);
}

/* The checks every sample call shares: returns the family or NULL. */
static family_t *sample_family(moirai_prom_writer_t *w, int family, bool histogram)
{
    if (!w || family < 0 || (size_t)family >= w->nfamilies)
        return NULL;
    family_t *f = &w->families[family];
    return (f->type == MOIRAI_PROM_HISTOGRAM) == histogram ? f : NULL;
}

static int add_line(moirai_prom_writer_t *w, int family, const moirai_prom_label_t *labels,
                    size_t n, const char *value, size_t value_len)
{
    const family_t *f = &w->families[family];
    size_t len = line_len(f, "", labels, n, NULL, value_len);
    if (len > UINT32_MAX)
        return -ENOMEM;
    int err = log_reserve(w, sizeof(record_head_t) + len);
    if (err)
        return err;
    f = &w->families[family];
    char *p = record_start(w, family, len);
    put_line(p, f, "", labels, n, NULL, value, value_len);
    w->log_len += sizeof(record_head_t) + len;
    w->families[family].bytes += len;
    return 0;
}

int moirai_prom_writer_sample(moirai_prom_writer_t *w, int family,
                              const moirai_prom_label_t *labels, size_t nlabels, double value)
{
    family_t *f = sample_family(w, family, false);
    if (!f || labels_ok(labels, nlabels, false) != 0)
        return -EINVAL;
    if (f->type == MOIRAI_PROM_COUNTER && (isnan(value) || value < 0))
        return -EINVAL;
    char buf[32];
    size_t n = format_double(buf, value);
    return add_line(w, family, labels, nlabels, buf, n);
}

int moirai_prom_writer_sample_u64(moirai_prom_writer_t *w, int family,
                                  const moirai_prom_label_t *labels, size_t nlabels, uint64_t value)
{
    if (!sample_family(w, family, false) || labels_ok(labels, nlabels, false) != 0)
        return -EINVAL;
    char buf[32];
    size_t n = format_u64(buf, value);
    return add_line(w, family, labels, nlabels, buf, n);
}

int moirai_prom_writer_histogram(moirai_prom_writer_t *w, int family,
                                 const moirai_prom_label_t *labels, size_t nlabels,
                                 const double *bounds, const uint64_t *counts, size_t nbuckets,
                                 double sum)
{
    family_t *f = sample_family(w, family, true);
    if (!f || labels_ok(labels, nlabels, true) != 0 || (nbuckets > 0 && !bounds) || !counts ||
        isnan(sum))
        return -EINVAL;
    uint64_t total = 0;
    for (size_t i = 0; i <= nbuckets; i++) {
        if (i < nbuckets && (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))))
            return -EINVAL;
        if (counts[i] > UINT64_MAX - total)
            return -EINVAL;
        total += counts[i];
    }
    /* Two passes over the buckets: the first sizes the record, so the
     * log grows once (or not at all, leaving the writer unchanged), the
     * second writes it. */
    char le[32], value[32], sum_text[32];
    size_t sum_len = format_double(sum_text, sum);
    size_t len = 0;
    uint64_t cum = 0;
    for (size_t i = 0; i <= nbuckets; i++) {
        cum += counts[i];
        if (i < nbuckets)
            format_double(le, bounds[i]);
        else
            strcpy(le, "+Inf");
        size_t vlen = format_u64(value, cum);
        len += line_len(f, "_bucket", labels, nlabels, le, vlen);
    }
    size_t count_len = format_u64(value, total);
    len += line_len(f, "_sum", labels, nlabels, NULL, sum_len);
    len += line_len(f, "_count", labels, nlabels, NULL, count_len);
    if (len > UINT32_MAX)
        return -ENOMEM;
    int err = log_reserve(w, sizeof(record_head_t) + len);
    if (err)
        return err;
    f = &w->families[family];
    char *p = record_start(w, family, len);
    cum = 0;
    for (size_t i = 0; i <= nbuckets; i++) {
        cum += counts[i];
        if (i < nbuckets)
            format_double(le, bounds[i]);
        else
            strcpy(le, "+Inf");
        size_t vlen = format_u64(value, cum);
        p = put_line(p, f, "_bucket", labels, nlabels, le, value, vlen);
    }
    p = put_line(p, f, "_sum", labels, nlabels, NULL, sum_text, sum_len);
    format_u64(value, total);
    put_line(p, f, "_count", labels, nlabels, NULL, value, count_len);
    w->log_len += sizeof(record_head_t) + len;
    w->families[family].bytes += len;
    return 0;
}

/* ---- marks ---- */

moirai_prom_mark_t moirai_prom_writer_mark(const moirai_prom_writer_t *w)
{
    moirai_prom_mark_t m = {0, 0};
    if (w) {
        m.records = w->log_len;
        m.families = w->nfamilies;
    }
    return m;
}

void moirai_prom_writer_rollback(moirai_prom_writer_t *w, moirai_prom_mark_t mark)
{
    if (!w || mark.records > w->log_len || mark.families > w->nfamilies)
        return;
    /* A mark of an earlier state ends on a record boundary and no record
     * before it names a family declared after it; anything else is stale
     * and would leave records pointing at missing families. Rolling back
     * is an error path, so the walk's cost does not matter. */
    size_t off = 0;
    while (off < mark.records) {
        record_head_t h;
        memcpy(&h, w->log + off, sizeof(h));
        if (h.family >= mark.families)
            return;
        off += sizeof(h) + h.len;
    }
    if (off != mark.records)
        return;
    w->log_len = mark.records;
    families_truncate(w, mark.families);
    index_rebuild(w);
    /* The byte counts of the families that remain, from what remains. */
    for (size_t f = 0; f < w->nfamilies; f++)
        w->families[f].bytes = 0;
    for (off = 0; off < w->log_len;) {
        record_head_t h;
        memcpy(&h, w->log + off, sizeof(h));
        w->families[h.family].bytes += h.len;
        off += sizeof(h) + h.len;
    }
}

/* ---- rendering ---- */

static const char *type_name(moirai_prom_type_t t)
{
    switch (t) {
    case MOIRAI_PROM_COUNTER:
        return "counter";
    case MOIRAI_PROM_GAUGE:
        return "gauge";
    default:
        return "histogram";
    }
}

/* The HELP and TYPE lines of `f`: their length, and when `p` is not NULL
 * the lines themselves. */
static size_t family_head(const family_t *f, char *p)
{
    size_t name = strlen(f->name);
    const char *type = type_name(f->type);
    size_t len = 7 + name + 1 + strlen(type) + 1; /* "# TYPE name type\n" */
    if (f->help)
        len += 7 + name + 1 + escaped_len(f->help, false) + 1;
    if (!p)
        return len;
    if (f->help) {
        p = put(p, "# HELP ", 7);
        p = put(p, f->name, name);
        *p++ = ' ';
        p = put_escaped(p, f->help, false);
        *p++ = '\n';
    }
    p = put(p, "# TYPE ", 7);
    p = put(p, f->name, name);
    *p++ = ' ';
    p = put(p, type, strlen(type));
    *p++ = '\n';
    return len;
}

int moirai_prom_writer_render(moirai_prom_writer_t *w, const char **text, size_t *len)
{
    if (!w || !text || !len)
        return -EINVAL;
    /* Each family's place: its header, then its records' bytes. */
    size_t total = 0;
    for (size_t i = 0; i < w->nfamilies; i++)
        total += family_head(&w->families[i], NULL) + w->families[i].bytes;
    if (total > w->text_cap || !w->text) {
        char *t = moirai_realloc(w->text, total ? total : 1);
        if (!t)
            return -ENOMEM;
        w->text = t;
        w->text_cap = total ? total : 1;
    }
    size_t pos = 0;
    for (size_t i = 0; i < w->nfamilies; i++) {
        pos += family_head(&w->families[i], w->text + pos);
        w->families[i].out_pos = pos;
        pos += w->families[i].bytes;
    }
    /* One walk of the log, each record to its family's next place: the
     * records of a family keep their order. */
    for (size_t off = 0; off < w->log_len;) {
        record_head_t h;
        memcpy(&h, w->log + off, sizeof(h));
        family_t *f = &w->families[h.family];
        memcpy(w->text + f->out_pos, w->log + off + sizeof(h), h.len);
        f->out_pos += h.len;
        off += sizeof(h) + h.len;
    }
    *text = w->text;
    *len = total;
    return 0;
}
