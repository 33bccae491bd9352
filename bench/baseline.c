/* moirai-bench's stored baselines of ratios: reading, judging, widening and
 * writing them (see baseline.h for the format and the verdicts). */
#include "baseline.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    char *suite, *name, *impl;
    double low, high;
    unsigned runs;
    bool touched; /* updated by this run: its suite's file is rewritten */
} entry_t;

static entry_t *entries;
static size_t entry_count, entry_cap;

static char *copy(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

static entry_t *find(const char *suite, const char *name, const char *impl)
{
    for (size_t i = 0; i < entry_count; i++) {
        entry_t *e = &entries[i];
        if (!strcmp(e->suite, suite) && !strcmp(e->name, name) && !strcmp(e->impl, impl))
            return e;
    }
    return NULL;
}

static entry_t *add(const char *suite, const char *name, const char *impl)
{
    if (entry_count == entry_cap) {
        size_t cap = entry_cap ? entry_cap * 2 : 64;
        entry_t *grown = realloc(entries, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        entries = grown;
        entry_cap = cap;
    }
    entry_t *e = &entries[entry_count];
    *e = (entry_t){.suite = copy(suite), .name = copy(name), .impl = copy(impl)};
    if (!e->suite || !e->name || !e->impl) {
        free(e->suite);
        free(e->name);
        free(e->impl);
        return NULL;
    }
    entry_count++;
    return e;
}

static bool loaded_already(const char *const *suites, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (!strcmp(suites[j], suites[i]))
            return true;
    return false;
}

/* Parses one suite's file. A line is blank, a comment, or exactly five
 * fields with 0 < low <= high and runs >= 1. */
static int load_file(const char *path, const char *suite)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "moirai-bench: cannot read baseline %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[512];
    int number = 0, status = 0;
    while (status == 0 && fgets(line, sizeof(line), f)) {
        number++;
        if (!strchr(line, '\n') && !feof(f)) {
            fprintf(stderr, "moirai-bench: %s:%d: line too long\n", path, number);
            status = -1;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char name[128], impl[64], extra[2];
        double low, high;
        unsigned runs;
        int n = sscanf(line, "%127s %63s %lf %lf %u %1s", name, impl, &low, &high, &runs, extra);
        if (n == EOF || (n <= 0 && strspn(line, " \t\r\n") == strlen(line)))
            continue;
        if (n != 5 || !(low > 0.0) || !(high >= low) || !isfinite(high) || runs == 0) {
            fprintf(stderr,
                    "moirai-bench: %s:%d: malformed baseline line (want \"case impl low high "
                    "runs\" with 0 < low <= high, runs >= 1)\n",
                    path, number);
            status = -1;
        } else if (find(suite, name, impl)) {
            fprintf(stderr, "moirai-bench: %s:%d: %s/%s appears twice\n", path, number, name, impl);
            status = -1;
        } else {
            entry_t *e = add(suite, name, impl);
            if (!e) {
                fprintf(stderr, "moirai-bench: out of memory reading %s\n", path);
                status = -1;
            } else {
                e->low = low;
                e->high = high;
                e->runs = runs;
            }
        }
    }
    if (status == 0 && ferror(f)) {
        fprintf(stderr, "moirai-bench: error reading %s\n", path);
        status = -1;
    }
    fclose(f);
    return status;
}

int baseline_load(const char *dir, const char *const *suites, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (loaded_already(suites, i))
            continue;
        char path[4096];
        if (snprintf(path, sizeof(path), "%s/%s.txt", dir, suites[i]) >= (int)sizeof(path)) {
            fprintf(stderr, "moirai-bench: baseline directory name too long\n");
            return -1;
        }
        if (load_file(path, suites[i]) < 0)
            return -1;
    }
    return 0;
}

baseline_verdict_t baseline_judge(const bench_case_t *c, const char *impl, double ratio,
                                  double *worse)
{
    const entry_t *e = find(c->suite, c->name, impl);
    *worse = e ? ratio / e->high : 0.0;
    if (!e || *worse <= BASELINE_WARN_FACTOR)
        return BASELINE_FINE;
    return *worse > BASELINE_FAIL_FACTOR ? BASELINE_SUSPECT : BASELINE_WARN;
}

int baseline_update(const bench_case_t *c, const char *impl, double ratio)
{
    entry_t *e = find(c->suite, c->name, impl);
    if (!e) {
        e = add(c->suite, c->name, impl);
        if (!e)
            return -1;
        e->low = e->high = ratio;
    } else {
        e->low = ratio < e->low ? ratio : e->low;
        e->high = ratio > e->high ? ratio : e->high;
    }
    e->runs++;
    e->touched = true;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    int d = strcmp(x->suite, y->suite);
    if (!d)
        d = strcmp(x->name, y->name);
    return d ? d : strcmp(x->impl, y->impl);
}

static int write_suite(const char *dir, const char *suite)
{
    char path[4096], tmp[4200];
    if (snprintf(path, sizeof(path), "%s/%s.txt", dir, suite) >= (int)sizeof(path)) {
        fprintf(stderr, "moirai-bench: baseline directory name too long\n");
        return -1;
    }
    /* Written beside and renamed over, so an interrupted run never leaves
     * a half-written baseline. */
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "moirai-bench: cannot write %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    fprintf(f,
            "# moirai-bench baseline, suite %s: the band of ratios Moirai / impl seen\n"
            "# over `runs` runs (see bench/baseline.h; rewritten by --write-baseline).\n"
            "# case impl low high runs\n",
            suite);
    for (size_t i = 0; i < entry_count; i++) {
        const entry_t *e = &entries[i];
        if (!strcmp(e->suite, suite))
            fprintf(f, "%s %s %.4g %.4g %u\n", e->name, e->impl, e->low, e->high, e->runs);
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "moirai-bench: cannot write %s: %s\n", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

int baseline_write(const char *dir)
{
    /* Sorted, each suite's entries are consecutive and come out in order. */
    qsort(entries, entry_count, sizeof(*entries), by_name);
    for (size_t i = 0; i < entry_count;) {
        size_t j = i;
        bool touched = false;
        while (j < entry_count && !strcmp(entries[j].suite, entries[i].suite))
            touched |= entries[j++].touched;
        if (touched && write_suite(dir, entries[i].suite) < 0)
            return -1;
        i = j;
    }
    return 0;
}

void baseline_free(void)
{
    for (size_t i = 0; i < entry_count; i++) {
        free(entries[i].suite);
        free(entries[i].name);
        free(entries[i].impl);
    }
    free(entries);
    entries = NULL;
    entry_count = entry_cap = 0;
}
