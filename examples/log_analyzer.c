/* A parallel log analyzer: count requests per (method, resource, status).
 *
 * Generates about two million synthetic access-log lines in memory, then
 * counts them three ways and checks that all three agree:
 *
 *   serial   one thread parses every line into a plain hash table;
 *   chunked  a moirai_pipeline_run() pipeline: a serial source cuts the
 *            buffer into chunks of about 4 MiB at line boundaries, a
 *            parallel stage parses a chunk into its own plain table (no
 *            atomics, no sharing) and then merges that table into one
 *            moirai_map_t with moirai_map_fetch_add(), one call per
 *            distinct key of the chunk;
 *   direct   the same pipeline, but the parallel stage calls
 *            moirai_map_fetch_add() for every line.
 *
 * "chunked" is the pattern docs/performance.md recommends: shared state is
 * touched once per chunk and key, not once per item, so the parallel part
 * is almost all parsing. "direct" shows the cost of a shared update per
 * item (an RCU read section, a hash, a lookup and a compare-and-swap on a
 * line that both CPUs write).
 *
 * Usage: example_log_analyzer [lines] [workers]  (defaults 2000000, 2).
 * Prints the median of three timed runs of each variant and the speedups
 * over serial. Exits non-zero if any variant's counts differ from the
 * serial ones; the timings are information, not a pass condition. */
#include <moirai/core.h>
#include <moirai/sched.h>
#include <moirai/sync.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { CHUNK_BYTES = 4 << 20, IN_FLIGHT = 8, RUNS = 3, KEY_MAX = 48 };

/* ---- the synthetic log ---- */

static const char *const methods[] = {"GET", "GET", "GET", "POST", "PUT", "DELETE"};
static const char *const resources[] = {"users",    "orders",   "items",   "carts",    "payments",
                                        "sessions", "search",   "reviews", "images",   "reports",
                                        "metrics",  "health",   "login",   "logout",   "tags",
                                        "coupons",  "invoices", "stock",   "shipping", "returns"};
static const unsigned statuses[] = {200, 200, 200, 200, 201, 204, 301, 304, 400, 404, 500, 503};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Lines like
 *   10.1.23.4 - - [06/Dec/2026:04:12:56 +0000] "GET /api/orders/8812 HTTP/1.1" 200 5120 */
static char *generate(size_t lines, size_t *len)
{
    size_t cap = lines * 100 + 1;
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    uint64_t s = 0x2545f4914f6cdd1dull;
    size_t n = 0;
    for (size_t i = 0; i < lines; i++) {
        uint64_t r = rnd(&s);
        n += (size_t)snprintf(
            buf + n, cap - n,
            "10.%u.%u.%u - - [06/Dec/2026:04:%02u:%02u +0000] \"%s /api/%s/%u HTTP/1.1\" %u %u\n",
            (unsigned)(r & 255), (unsigned)((r >> 8) & 255), (unsigned)((r >> 16) & 255),
            (unsigned)((r >> 24) % 60), (unsigned)((r >> 30) % 60),
            methods[(r >> 36) % COUNT_OF(methods)], resources[(r >> 40) % COUNT_OF(resources)],
            (unsigned)((r >> 44) % 10000), statuses[(r >> 54) % COUNT_OF(statuses)],
            (unsigned)((r >> 20) % 60000));
    }
    *len = n;
    return buf;
}

/* ---- parsing ---- */

/* Builds the key "METHOD resource STATUS" of the line at `p` (ending at
 * `end`, the newline) into `key`; returns its length, or 0 for a line
 * that does not parse. */
static size_t parse_line(const char *p, const char *end, char key[KEY_MAX])
{
    const char *q = memchr(p, '"', (size_t)(end - p));
    if (q == NULL)
        return 0;
    q++;
    size_t k = 0;
    while (q < end && *q != ' ' && k < KEY_MAX - 8) /* method */
        key[k++] = *q++;
    if (q + 6 >= end || memcmp(q, " /api/", 6) != 0)
        return 0;
    q += 6;
    key[k++] = ' ';
    while (q < end && *q != '/' && *q != ' ' && k < KEY_MAX - 5) /* resource */
        key[k++] = *q++;
    q = memchr(q, '"', (size_t)(end - q));
    if (q == NULL || q + 5 > end)
        return 0;
    q += 2; /* past the quote and the space */
    key[k++] = ' ';
    for (int i = 0; i < 3; i++) { /* status */
        if (q[i] < '0' || q[i] > '9')
            return 0;
        key[k++] = q[i];
    }
    return k;
}

/* ---- a plain (single-threaded) counting table: open addressing ---- */

typedef struct slot {
    uint64_t count; /* 0: empty */
    uint8_t len;
    char key[KEY_MAX];
} slot_t;

typedef struct table {
    size_t mask;
    size_t used;
    slot_t *slots;
} table_t;

static int table_init(table_t *t, size_t slots)
{
    t->mask = slots - 1;
    t->used = 0;
    t->slots = calloc(slots, sizeof(slot_t));
    return t->slots != NULL ? 0 : -ENOMEM;
}

static uint64_t key_hash(const char *key, size_t len)
{
    return moirai_map_hash(key, len, 1);
}

/* Adds one to `key`; -ENOSPC when the table is full (it is sized far
 * above the key space here). */
static int table_add(table_t *t, const char *key, size_t len)
{
    for (size_t i = key_hash(key, len) & t->mask, probes = 0; probes <= t->mask;
         i = (i + 1) & t->mask, probes++) {
        slot_t *s = &t->slots[i];
        if (s->count == 0) {
            if (2 * (t->used + 1) > t->mask + 1)
                return -ENOSPC;
            s->count = 1;
            s->len = (uint8_t)len;
            memcpy(s->key, key, len);
            t->used++;
            return 0;
        }
        if (s->len == len && memcmp(s->key, key, len) == 0) {
            s->count++;
            return 0;
        }
    }
    return -ENOSPC;
}

/* Parses every line of [p, end) into `t`. */
static int count_lines(table_t *t, const char *p, const char *end)
{
    char key[KEY_MAX];
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            nl = end;
        size_t len = parse_line(p, nl, key);
        if (len > 0) {
            int rc = table_add(t, key, len);
            if (rc != 0)
                return rc;
        }
        p = nl + 1;
    }
    return 0;
}

/* ---- the pipeline ---- */

/* Tables for the chunks in flight, reused from chunk to chunk so that
 * no chunk pays for allocating and zeroing one. */
typedef struct job {
    const char *buf, *end;
    const char *next; /* the source's position */
    moirai_map_t *map;
    moirai_mutex_t lock; /* guards free_tables */
    table_t *free_tables[IN_FLIGHT];
    size_t nfree;
    table_t tables[IN_FLIGHT];
} job_t;

typedef struct chunk {
    const char *p, *end;
} chunk_t;

/* Source (serial): the next chunk of about CHUNK_BYTES, cut after a
 * newline. */
static int next_chunk(void *arg, void *in, void **out)
{
    (void)in;
    job_t *job = arg;
    if (job->next >= job->end)
        return MOIRAI_PIPELINE_END;
    const char *p = job->next;
    const char *e = p + CHUNK_BYTES < job->end ? p + CHUNK_BYTES : job->end;
    if (e < job->end) {
        const char *nl = memchr(e, '\n', (size_t)(job->end - e));
        e = nl != NULL ? nl + 1 : job->end;
    }
    chunk_t *c = malloc(sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    c->p = p;
    c->end = e;
    job->next = e;
    *out = c;
    return 0;
}

/* Parallel: count the chunk into its own table, then merge it into the
 * shared map with one fetch_add per distinct key. */
static int count_chunk_merged(void *arg, void *in, void **out)
{
    (void)out;
    job_t *job = arg;
    chunk_t *c = in;
    /* At most IN_FLIGHT chunks are in the stage at once: a table is free. */
    moirai_mutex_lock(&job->lock);
    table_t *t = job->free_tables[--job->nfree];
    moirai_mutex_unlock(&job->lock);
    int rc = count_lines(t, c->p, c->end);
    for (size_t i = 0; i <= t->mask; i++) {
        slot_t *s = &t->slots[i];
        if (s->count != 0) {
            if (rc == 0 &&
                moirai_map_fetch_add(job->map, s->key, s->len, (intptr_t)s->count, NULL) < 0)
                rc = -ENOMEM;
            s->count = 0; /* empty again for the next chunk */
        }
    }
    t->used = 0;
    moirai_mutex_lock(&job->lock);
    job->free_tables[job->nfree++] = t;
    moirai_mutex_unlock(&job->lock);
    free(c);
    return rc;
}

/* Parallel: one shared update per line. */
static int count_chunk_direct(void *arg, void *in, void **out)
{
    (void)out;
    job_t *job = arg;
    chunk_t *c = in;
    char key[KEY_MAX];
    int rc = 0;
    for (const char *p = c->p; rc == 0 && p < c->end;) {
        const char *nl = memchr(p, '\n', (size_t)(c->end - p));
        if (nl == NULL)
            nl = c->end;
        size_t len = parse_line(p, nl, key);
        if (len > 0 && moirai_map_fetch_add(job->map, key, len, 1, NULL) < 0)
            rc = -ENOMEM;
        p = nl + 1;
    }
    free(c);
    return rc;
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* CPU time of the whole process (all threads): on a machine shared with
 * other work, wall-clock speedups depend on the CPUs others leave free,
 * while the CPU time spent says how much work the parallel version adds. */
static double cpu_s(void)
{
    return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

static int run_parallel(moirai_sched_t *sched, const char *buf, size_t len, moirai_stage_fn fn,
                        moirai_map_t **out)
{
    static job_t job; /* one run at a time */
    job.buf = buf;
    job.end = buf + len;
    job.next = buf;
    moirai_mutex_init(&job.lock);
    job.nfree = 0;
    int rc = 0;
    for (size_t i = 0; i < IN_FLIGHT; i++) {
        if (rc == 0)
            rc = table_init(&job.tables[i], 2048); /* 720 keys at most here */
        else
            job.tables[i].slots = NULL;
        job.free_tables[job.nfree++] = &job.tables[i];
    }
    if (rc == 0)
        rc = moirai_map_create(&job.map, &(moirai_map_config_t){.initial_buckets = 1024});
    if (rc != 0) {
        for (size_t i = 0; i < IN_FLIGHT; i++)
            free(job.tables[i].slots);
        return rc;
    }
    const moirai_pipeline_stage_t stages[] = {
        {MOIRAI_STAGE_SERIAL_IN_ORDER, next_chunk, &job},
        {MOIRAI_STAGE_PARALLEL, fn, &job},
    };
    rc = moirai_pipeline_run(sched, IN_FLIGHT, stages, 2);
    for (size_t i = 0; i < IN_FLIGHT; i++)
        free(job.tables[i].slots);
    if (rc != 0) {
        moirai_map_destroy(job.map);
        return rc;
    }
    *out = job.map;
    return 0;
}

/* Does `map` hold exactly the counts of `t`? */
static int same_counts(const table_t *t, moirai_map_t *map)
{
    if (moirai_map_count(map) != t->used)
        return 0;
    for (size_t i = 0; i <= t->mask; i++) {
        const slot_t *s = &t->slots[i];
        void *v = NULL;
        if (s->count != 0 &&
            (moirai_map_lookup(map, s->key, s->len, &v) != 0 || (uint64_t)(uintptr_t)v != s->count))
            return 0;
    }
    return 1;
}

static double median3(double a[RUNS])
{
    double x = a[0], y = a[1], z = a[2];
    if (x > y) {
        double t = x;
        x = y;
        y = t;
    }
    if (y > z)
        y = z;
    return x > y ? x : y;
}

int main(int argc, char **argv)
{
    size_t lines = argc > 1 ? strtoul(argv[1], NULL, 10) : 2000000;
    int workers = argc > 2 ? atoi(argv[2]) : 2;
    size_t len;
    char *buf = generate(lines, &len);
    if (buf == NULL || lines == 0)
        return 1;

    moirai_sched_t *sched;
    moirai_sched_config_t cfg;
    moirai_sched_config_init(&cfg);
    cfg.workers = workers;
    if (moirai_sched_create(&sched, &cfg) != 0)
        return 1;

    double t_serial[RUNS], t_chunked[RUNS], t_direct[RUNS];
    double c_serial[RUNS], c_chunked[RUNS], c_direct[RUNS];
    int ok = 1;
    uint64_t total = 0;
    for (int r = 0; r < RUNS && ok; r++) {
        /* Serial. */
        table_t t;
        if (table_init(&t, 4096) != 0)
            return 1;
        double t0 = now_s(), c0 = cpu_s();
        int rc = count_lines(&t, buf, buf + len);
        t_serial[r] = now_s() - t0;
        c_serial[r] = cpu_s() - c0;
        total = 0;
        for (size_t i = 0; i <= t.mask; i++)
            total += t.slots[i].count;
        ok &= rc == 0 && total == lines;

        /* Parallel, per-chunk tables merged. */
        moirai_map_t *map = NULL;
        t0 = now_s();
        c0 = cpu_s();
        rc = run_parallel(sched, buf, len, count_chunk_merged, &map);
        t_chunked[r] = now_s() - t0;
        c_chunked[r] = cpu_s() - c0;
        ok &= rc == 0 && same_counts(&t, map);
        moirai_map_destroy(map);

        /* Parallel, one shared update per line. */
        map = NULL;
        t0 = now_s();
        c0 = cpu_s();
        rc = run_parallel(sched, buf, len, count_chunk_direct, &map);
        t_direct[r] = now_s() - t0;
        c_direct[r] = cpu_s() - c0;
        if (rc != 0 || !same_counts(&t, map))
            fprintf(stderr, "rc %d count %zu used %zu\n", rc, map ? moirai_map_count(map) : 0,
                    t.used);
        ok &= rc == 0 && same_counts(&t, map);
        moirai_map_destroy(map);
        free(t.slots);
    }
    moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN);
    free(buf);
    if (!ok) {
        printf("log analyzer: the parallel counts differ from the serial ones\n");
        return 1;
    }

    double s = median3(t_serial), c = median3(t_chunked), d = median3(t_direct);
    printf("log analyzer: %zu lines (%.0f MB), %llu counted, %d workers, median of %d runs\n",
           lines, (double)len / 1e6, (unsigned long long)total, workers, RUNS);
    printf("                                 wall      speedup    CPU (all threads)\n");
    printf("  serial                       %8.1f ms            %8.1f ms\n", s * 1e3,
           median3(c_serial) * 1e3);
    printf("  parallel, per-chunk + merge  %8.1f ms  %5.2fx    %8.1f ms\n", c * 1e3, s / c,
           median3(c_chunked) * 1e3);
    printf("  parallel, fetch_add per line %8.1f ms  %5.2fx    %8.1f ms\n", d * 1e3, s / d,
           median3(c_direct) * 1e3);
    return 0;
}
