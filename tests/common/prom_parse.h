/* A strict parser of the Prometheus text exposition format (0.0.4) for the
 * tests of the metrics export: it reads text back into samples and fails
 * on anything the format does not allow or the exporter promises not to
 * do.
 *
 * Checked: every line is "# HELP name text", "# TYPE name type" or a
 * sample "name{label="value",...} value" (labels optional), nothing else;
 * metric and label names match the format's patterns; label values use
 * only the escapes \\, \" and \n; values parse as numbers (or +Inf, -Inf,
 * NaN); each family has one TYPE line, after its HELP line and before its
 * samples; all samples of a family are contiguous (a sample must belong to
 * the family whose TYPE came last); a counter or gauge sample carries the
 * family's name, a histogram's carries it with _bucket, _sum or _count;
 * histogram buckets carry an "le" label, are cumulative and end with
 * le="+Inf" equal to _count. The text must end with a newline.
 *
 * Header-only (static functions), allocating with the C library so an
 * installed failing allocator does not disturb it. */
#ifndef MOIRAI_TEST_PROM_PARSE_H
#define MOIRAI_TEST_PROM_PARSE_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PROM_MAX_LABELS = 8 };

typedef struct prom_sample {
    char name[128];
    int nlabels;
    char label_name[PROM_MAX_LABELS][64];
    char label_value[PROM_MAX_LABELS][256]; /* unescaped */
    double value;
    char value_text[64];
    int family; /* index into prom_doc_t.families */
} prom_sample_t;

typedef struct prom_family {
    char name[128];
    char type[16];
    char kind;      /* the type's first letter: 'c', 'g' or 'h' (0 before TYPE) */
    char help[512]; /* unescaped; "" without HELP */
    bool has_help;
} prom_family_t;

typedef struct prom_doc {
    prom_family_t *families;
    int nfamilies;
    prom_sample_t *samples;
    int nsamples;
    char error[256]; /* why parsing failed */
} prom_doc_t;

static inline bool prom_metric_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

static inline bool prom_label_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

/* Reads a name at *p into out (cap bytes) with the given character
 * class; returns false if empty or too long. */
static inline bool prom_read_name(const char **p, const char *end, char *out, size_t cap,
                                  bool metric)
{
    size_t n = 0;
    while (*p < end && (metric ? prom_metric_char(**p, n == 0) : prom_label_char(**p, n == 0))) {
        if (n + 1 >= cap)
            return false;
        out[n++] = *(*p)++;
    }
    out[n] = '\0';
    return n > 0;
}

static inline bool prom_parse_value(const char *s, double *out)
{
    if (!strcmp(s, "+Inf")) {
        *out = INFINITY;
        return true;
    }
    if (!strcmp(s, "-Inf")) {
        *out = -INFINITY;
        return true;
    }
    if (!strcmp(s, "NaN")) {
        *out = NAN;
        return true;
    }
    if (!*s)
        return false;
    /* Plain decimal or exponent notation only (strtod would also take hex
     * and "inf"). */
    for (const char *c = s; *c; c++)
        if (!strchr("0123456789.eE+-", *c))
            return false;
    char *e;
    *out = strtod(s, &e);
    return *e == '\0';
}

static inline bool prom_fail(prom_doc_t *d, int line, const char *why)
{
    snprintf(d->error, sizeof(d->error), "line %d: %s", line, why);
    return false;
}

static inline int prom_find_family(const prom_doc_t *d, const char *name)
{
    for (int i = 0; i < d->nfamilies; i++)
        if (!strcmp(d->families[i].name, name))
            return i;
    return -1;
}

/* Checks the histogram samples of family f (after parsing). */
static inline bool prom_check_histograms(prom_doc_t *d, int f)
{
    const prom_family_t *fam = &d->families[f];
    char bucket[160], count[160];
    snprintf(bucket, sizeof(bucket), "%s_bucket", fam->name);
    snprintf(count, sizeof(count), "%s_count", fam->name);
    /* Buckets of one label set are consecutive and end with +Inf; the
     * _count of that label set must equal the +Inf bucket. */
    double prev = -1;
    bool open = false;
    for (int i = 0; i < d->nsamples; i++) {
        prom_sample_t *s = &d->samples[i];
        if (s->family != f)
            continue;
        if (!strcmp(s->name, bucket)) {
            const char *le = NULL;
            for (int l = 0; l < s->nlabels; l++)
                if (!strcmp(s->label_name[l], "le"))
                    le = s->label_value[l];
            if (!le)
                return prom_fail(d, 0, "histogram bucket without le");
            if (open && s->value < prev)
                return prom_fail(d, 0, "histogram buckets not cumulative");
            prev = s->value;
            open = strcmp(le, "+Inf") != 0;
        } else if (!strcmp(s->name, count)) {
            if (open)
                return prom_fail(d, 0, "histogram _count before its +Inf bucket");
            if (s->value != prev)
                return prom_fail(d, 0, "histogram _count differs from its +Inf bucket");
        }
    }
    return !open ? true : prom_fail(d, 0, "histogram without a +Inf bucket");
}

/* realloc, or abort: the parser's own memory is not under test. */
static inline void *prom_grow(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (!q)
        abort();
    return q;
}

/* Parses `text` (len bytes) into `d`. Returns true, or false with
 * d->error saying why. Free with prom_doc_free(). */
static inline bool prom_parse(const char *text, size_t len, prom_doc_t *d)
{
    memset(d, 0, sizeof(*d));
    int cap_f = 16, cap_s = 64;
    d->families = calloc((size_t)cap_f, sizeof(*d->families));
    d->samples = calloc((size_t)cap_s, sizeof(*d->samples));
    if (!d->families || !d->samples)
        return prom_fail(d, 0, "out of memory");
    if (len > 0 && text[len - 1] != '\n')
        return prom_fail(d, 0, "text does not end with a newline");
    const char *p = text, *end = text + len;
    int line = 0, current = -1;
    bool current_has_samples = false;
    while (p < end) {
        line++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == p)
            return prom_fail(d, line, "empty line");
        if (*p == '#') {
            char kind[8] = {0}, name[128];
            if (eol - p < 7 || p[1] != ' ')
                return prom_fail(d, line, "comment of the wrong shape");
            memcpy(kind, p + 2, 4);
            if (p[6] != ' ' || (strcmp(kind, "HELP") && strcmp(kind, "TYPE")))
                return prom_fail(d, line, "comment is neither HELP nor TYPE");
            const char *q = p + 7;
            if (!prom_read_name(&q, eol, name, sizeof(name), true) || q >= eol || *q != ' ')
                return prom_fail(d, line, "bad metric name in comment");
            q++;
            int f = prom_find_family(d, name);
            if (!strcmp(kind, "HELP")) {
                if (f >= 0)
                    return prom_fail(d, line, "HELP for a family already seen");
                if (d->nfamilies == cap_f) {
                    cap_f *= 2;
                    d->families = prom_grow(d->families, (size_t)cap_f * sizeof(*d->families));
                }
                prom_family_t *fam = &d->families[d->nfamilies++];
                memset(fam, 0, sizeof(*fam));
                snprintf(fam->name, sizeof(fam->name), "%s", name);
                fam->has_help = true;
                size_t n = 0;
                for (; q < eol; q++) {
                    char c = *q;
                    if (c == '\\') {
                        if (q + 1 >= eol || (q[1] != '\\' && q[1] != 'n'))
                            return prom_fail(d, line, "bad escape in HELP");
                        c = q[1] == 'n' ? '\n' : '\\';
                        q++;
                    }
                    if (n + 1 < sizeof(fam->help))
                        fam->help[n++] = c;
                }
                current = -1; /* its TYPE must follow */
            } else {
                char type[16] = {0};
                size_t n = (size_t)(eol - q);
                if (n >= sizeof(type))
                    return prom_fail(d, line, "bad type");
                memcpy(type, q, n);
                if (strcmp(type, "counter") && strcmp(type, "gauge") && strcmp(type, "histogram"))
                    return prom_fail(d, line, "unknown type");
                if (f >= 0 && (d->families[f].type[0] || f != d->nfamilies - 1))
                    return prom_fail(d, line, "second TYPE for a family");
                if (f < 0) {
                    if (d->nfamilies == cap_f) {
                        cap_f *= 2;
                        d->families = prom_grow(d->families, (size_t)cap_f * sizeof(*d->families));
                    }
                    f = d->nfamilies++;
                    memset(&d->families[f], 0, sizeof(d->families[f]));
                    snprintf(d->families[f].name, sizeof(d->families[f].name), "%s", name);
                }
                snprintf(d->families[f].type, sizeof(d->families[f].type), "%s", type);
                d->families[f].kind = type[0];
                current = f;
                current_has_samples = false;
            }
        } else {
            if (d->nsamples == cap_s) {
                cap_s *= 2;
                d->samples = prom_grow(d->samples, (size_t)cap_s * sizeof(*d->samples));
            }
            prom_sample_t *s = &d->samples[d->nsamples];
            memset(s, 0, sizeof(*s));
            const char *q = p;
            if (!prom_read_name(&q, eol, s->name, sizeof(s->name), true))
                return prom_fail(d, line, "bad metric name");
            if (q < eol && *q == '{') {
                q++;
                while (q < eol && *q != '}') {
                    if (s->nlabels == PROM_MAX_LABELS)
                        return prom_fail(d, line, "too many labels");
                    int l = s->nlabels++;
                    if (!prom_read_name(&q, eol, s->label_name[l], sizeof(s->label_name[l]), false))
                        return prom_fail(d, line, "bad label name");
                    for (int j = 0; j < l; j++)
                        if (!strcmp(s->label_name[j], s->label_name[l]))
                            return prom_fail(d, line, "repeated label");
                    if (q + 1 >= eol || q[0] != '=' || q[1] != '"')
                        return prom_fail(d, line, "label without =\"");
                    q += 2;
                    size_t n = 0;
                    while (q < eol && *q != '"') {
                        char c = *q;
                        if (c == '\\') {
                            if (q + 1 >= eol || !strchr("\\\"n", q[1]))
                                return prom_fail(d, line, "bad escape in label value");
                            c = q[1] == 'n' ? '\n' : q[1];
                            q++;
                        }
                        if (n + 1 >= sizeof(s->label_value[l]))
                            return prom_fail(d, line, "label value too long for the parser");
                        s->label_value[l][n++] = c;
                        q++;
                    }
                    if (q >= eol)
                        return prom_fail(d, line, "unterminated label value");
                    q++;
                    if (q < eol && *q == ',')
                        q++;
                    else if (q < eol && *q != '}')
                        return prom_fail(d, line, "junk after a label");
                }
                if (q >= eol)
                    return prom_fail(d, line, "unterminated label set");
                q++;
            }
            if (q >= eol || *q != ' ')
                return prom_fail(d, line, "no space before the value");
            q++;
            size_t n = (size_t)(eol - q);
            if (n == 0 || n >= sizeof(s->value_text))
                return prom_fail(d, line, "bad value");
            memcpy(s->value_text, q, n);
            if (!prom_parse_value(s->value_text, &s->value))
                return prom_fail(d, line, "value does not parse");
            if (current < 0)
                return prom_fail(d, line, "sample before its family's TYPE");
            const prom_family_t *fam = &d->families[current];
            size_t fl = strlen(fam->name);
            bool ok;
            if (fam->kind == 'h')
                ok = !strncmp(s->name, fam->name, fl) &&
                     (!strcmp(s->name + fl, "_bucket") || !strcmp(s->name + fl, "_sum") ||
                      !strcmp(s->name + fl, "_count"));
            else
                ok = !strcmp(s->name, fam->name);
            if (!ok)
                return prom_fail(d, line, "sample outside its family (families not contiguous)");
            if (fam->kind == 'c' && !(s->value >= 0))
                return prom_fail(d, line, "counter below 0 or NaN");
            s->family = current;
            current_has_samples = true;
            d->nsamples++;
        }
        p = eol + 1;
    }
    (void)current_has_samples;
    for (int f = 0; f < d->nfamilies; f++) {
        if (!d->families[f].type[0])
            return prom_fail(d, 0, "HELP without TYPE");
        if (!strcmp(d->families[f].type, "histogram") && !prom_check_histograms(d, f))
            return false;
    }
    return true;
}

static inline void prom_doc_free(prom_doc_t *d)
{
    free(d->families);
    free(d->samples);
    d->families = NULL;
    d->samples = NULL;
}

/* The sample named `name` whose labels include every pair of `pairs`
 * (NULL-terminated: name, value, name, value, ..., NULL), or NULL. Fails
 * (returns NULL) if more than one matches, so a test asks precisely. */
static inline const prom_sample_t *prom_find(const prom_doc_t *d, const char *name,
                                             const char **pairs)
{
    const prom_sample_t *found = NULL;
    for (int i = 0; i < d->nsamples; i++) {
        const prom_sample_t *s = &d->samples[i];
        if (strcmp(s->name, name))
            continue;
        bool all = true;
        for (const char **kv = pairs; kv && *kv && all; kv += 2) {
            bool one = false;
            for (int l = 0; l < s->nlabels; l++)
                if (!strcmp(s->label_name[l], kv[0]) && !strcmp(s->label_value[l], kv[1]))
                    one = true;
            all = one;
        }
        if (all) {
            if (found)
                return NULL;
            found = s;
        }
    }
    return found;
}

/* The number of samples named `name`. */
static inline int prom_count(const prom_doc_t *d, const char *name)
{
    int n = 0;
    for (int i = 0; i < d->nsamples; i++)
        n += !strcmp(d->samples[i].name, name);
    return n;
}

/* The family named `name`, or NULL. */
static inline const prom_family_t *prom_family(const prom_doc_t *d, const char *name)
{
    int f = prom_find_family(d, name);
    return f < 0 ? NULL : &d->families[f];
}

/* The value of the one sample `name` with labels `pairs`, or NAN when
 * there is none or more than one. */
static inline double prom_value(const prom_doc_t *d, const char *name, const char **pairs)
{
    const prom_sample_t *s = prom_find(d, name, pairs);
    return s ? s->value : NAN;
}

#define PROM_LABELS(...) ((const char *[]){__VA_ARGS__, NULL})

#endif
