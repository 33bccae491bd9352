/* The Prometheus text format writer: families, samples filed under them,
 * and rendering with each family's samples together (see prom.h).
 *
 * Samples are kept in one append-only byte log of records, each a small
 * header (the family id and the text's length) followed by the sample's
 * finished text lines. Appending only means that a mark is two lengths and
 * a rollback is two truncations, so marks nest without allocating.
 * Rendering walks the log once per family and copies that family's
 * records: O(families x records), a few thousand header reads for the
 * tens of families and hundreds of samples an exporter holds. */
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
} family_t;

/* The header in front of each record's text in the log. */
typedef struct record_head {
    uint32_t family;
    uint32_t len; /* bytes of text after the header */
} record_head_t;

struct moirai_prom_writer {
    family_t *families;
    size_t nfamilies, families_cap;
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
    moirai_free(w->log);
    moirai_free(w->text);
    moirai_free(w);
}

void moirai_prom_writer_reset(moirai_prom_writer_t *w)
{
    if (!w)
        return;
    families_truncate(w, 0);
    w->log_len = 0;
}

static bool same_help(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int moirai_prom_writer_family(moirai_prom_writer_t *w, const char *name, moirai_prom_type_t type,
                              const char *help)
{
    if (!w || !metric_name_ok(name) ||
        (type != MOIRAI_PROM_COUNTER && type != MOIRAI_PROM_GAUGE && type != MOIRAI_PROM_HISTOGRAM))
        return -EINVAL;
    for (size_t i = 0; i < w->nfamilies; i++) {
        family_t *f = &w->families[i];
        if (strcmp(f->name, name) == 0)
            return f->type == type && same_help(f->help, help) ? (int)i : -EINVAL;
    }
    /* Ids are ints and record headers hold 32 bits: far beyond any use. */
    if (w->nfamilies >= INT32_MAX)
        return -ENOMEM;
    if (w->nfamilies == w->families_cap) {
        size_t cap = w->families_cap ? w->families_cap * 2 : 16;
        family_t *fs = moirai_realloc(w->families, cap * sizeof(*fs));
        if (!fs)
            return -ENOMEM;
        w->families = fs;
        w->families_cap = cap;
    }
    family_t f = {dup_str(name), help ? dup_str(help) : NULL, type};
    if (!f.name || (help && !f.help)) {
        moirai_free(f.name);
        moirai_free(f.help);
        return -ENOMEM;
    }
    w->families[w->nfamilies] = f;
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
    int n = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)value);
    return add_line(w, family, labels, nlabels, buf, (size_t)n);
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
        size_t vlen = (size_t)snprintf(value, sizeof(value), "%llu", (unsigned long long)cum);
        len += line_len(f, "_bucket", labels, nlabels, le, vlen);
    }
    size_t count_len = (size_t)snprintf(value, sizeof(value), "%llu", (unsigned long long)total);
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
        size_t vlen = (size_t)snprintf(value, sizeof(value), "%llu", (unsigned long long)cum);
        p = put_line(p, f, "_bucket", labels, nlabels, le, value, vlen);
    }
    p = put_line(p, f, "_sum", labels, nlabels, NULL, sum_text, sum_len);
    snprintf(value, sizeof(value), "%llu", (unsigned long long)total);
    put_line(p, f, "_count", labels, nlabels, NULL, value, count_len);
    w->log_len += sizeof(record_head_t) + len;
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
    /* Every record's text once, plus each family's header. */
    size_t total = w->log_len;
    for (size_t i = 0; i < w->nfamilies; i++)
        total += family_head(&w->families[i], NULL);
    if (total > w->text_cap || !w->text) {
        char *t = moirai_realloc(w->text, total ? total : 1);
        if (!t)
            return -ENOMEM;
        w->text = t;
        w->text_cap = total ? total : 1;
    }
    char *p = w->text;
    for (size_t i = 0; i < w->nfamilies; i++) {
        p += family_head(&w->families[i], p);
        size_t off = 0;
        while (off < w->log_len) {
            record_head_t h;
            memcpy(&h, w->log + off, sizeof(h));
            if (h.family == i)
                p = put(p, w->log + off + sizeof(h), h.len);
            off += sizeof(h) + h.len;
        }
    }
    *text = w->text;
    *len = (size_t)(p - w->text);
    return 0;
}
