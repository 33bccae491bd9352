/* The trace recorder's writer: the stopped session as Chrome trace-event
 * JSON ("JSON Object Format": a traceEvents array plus otherData), which
 * Perfetto and chrome://tracing open. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include <moirai/core/error.h>
#include <moirai/core/trace.h>
#include <moirai/core/version.h>

#include "trace_internal.h"

/* Writes `s` as a JSON string: quotes, backslashes and control characters
 * escaped; other bytes (UTF-8) as they are. NULL is written as "?". */
static void put_string(FILE *out, const char *s)
{
    if (s == NULL)
        s = "?";
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* Writes a timestamp: microseconds since the session start, with the
 * nanoseconds as three decimals. */
static void put_ts(FILE *out, uint64_t ns)
{
    uint64_t rel = ns - moirai__trace_start_ns;
    fprintf(out, "%" PRIu64 ".%03u", rel / 1000, (unsigned)(rel % 1000));
}

/* The fields every event of a thread shares. */
static void put_ids(FILE *out, pid_t pid, pid_t tid)
{
    fprintf(out, ",\"pid\":%ld,\"tid\":%ld", (long)pid, (long)tid);
}

/* Writes one thread's buffer; returns the events written from it. */
static uint64_t put_thread(FILE *out, pid_t pid, const moirai__trace_buf_t *b)
{
    fputs(",\n{\"name\":\"thread_name\",\"ph\":\"M\"", out);
    put_ids(out, pid, b->tid);
    fputs(",\"args\":{\"name\":", out);
    put_string(out, b->name[0] != '\0' ? b->name : "thread");
    fputs("}}", out);

    /* Acquire: pairs with the owner's release; events below the count are
     * complete. An event racing with the stop may be after it: ignored. */
    uint32_t n = atomic_load_explicit(&b->count, memory_order_acquire);
    uint64_t last = moirai__trace_start_ns;
    uint32_t depth = 0;
    for (uint32_t i = 0; i < n; i++) {
        const moirai__trace_event_t *e = &b->events[i];
        /* The clock is monotonic; the clamp only guards the file's
         * promise (timestamps never go back on a thread) against an event
         * that read the clock before the start's own reading. */
        if (e->ts_ns > last)
            last = e->ts_ns;
        if (e->phase == 'E') {
            if (depth == 0)
                continue; /* the recorder never keeps one; defensive */
            depth--;
        } else if (e->phase == 'B') {
            depth++;
        }
        fputs(",\n{\"ph\":", out);
        fprintf(out, "\"%c\"", e->phase);
        if (e->phase != 'E') {
            fputs(",\"name\":", out);
            put_string(out, e->name);
            fputs(",\"cat\":", out);
            put_string(out, e->cat);
        }
        if (e->phase == 'i')
            fputs(",\"s\":\"t\"", out);
        fputs(",\"ts\":", out);
        put_ts(out, last);
        put_ids(out, pid, b->tid);
        if (e->arg_name != NULL) {
            fputs(",\"args\":{", out);
            put_string(out, e->arg_name);
            fprintf(out, ":%" PRId64 "}", e->arg_value);
        }
        fputc('}', out);
    }
    /* Spans open at the stop end there, so every B has its E. */
    uint64_t end = moirai__trace_stop_ns > last ? moirai__trace_stop_ns : last;
    for (; depth > 0; depth--) {
        fputs(",\n{\"ph\":\"E\",\"ts\":", out);
        put_ts(out, end);
        put_ids(out, pid, b->tid);
        fputs(",\"args\":{\"unfinished\":1}}", out);
    }
    return n;
}

int moirai_trace_write_json(FILE *out)
{
    if (out == NULL)
        return MOIRAI_EINVAL;
    pthread_mutex_lock(&moirai__trace_lock);
    if (atomic_load_explicit(&moirai__trace_session, memory_order_relaxed) != 0) {
        pthread_mutex_unlock(&moirai__trace_lock);
        return -EBUSY;
    }
    pid_t pid = getpid();
    int held = moirai__trace_data_session;
    uint64_t recorded = 0, dropped = 0;
    uint32_t threads = 0;

    fputs("{\"traceEvents\":[\n{\"name\":\"process_name\",\"ph\":\"M\"", out);
    put_ids(out, pid, pid);
    fputs(",\"args\":{\"name\":", out);
    put_string(out, program_invocation_short_name);
    fputs("}}", out);
    /* The list is newest first; any order is valid, and each thread's
     * events stay in the order it recorded them. */
    for (const moirai__trace_buf_t *b = moirai__trace_bufs; held != 0 && b != NULL; b = b->next) {
        if (b->session != held)
            continue;
        recorded += put_thread(out, pid, b);
        dropped += atomic_load_explicit(&b->dropped, memory_order_relaxed);
        threads++;
    }
    dropped += atomic_load_explicit(&moirai__trace_dropped_nobuf, memory_order_relaxed);
    fputs("\n],\n\"displayTimeUnit\":\"ns\",\n\"otherData\":{\"moirai_version\":", out);
    put_string(out, MOIRAI_CORE_VERSION_STRING);
    fprintf(out,
            ",\"recorded\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"threads\":%" PRIu32
            ",\"events_per_thread\":%" PRIu32 "}}\n",
            recorded, dropped, threads, held != 0 ? moirai__trace_capacity : 0);
    pthread_mutex_unlock(&moirai__trace_lock);
    if (fflush(out) != 0 || ferror(out))
        return -EIO;
    return 0;
}

int moirai_trace_write_json_path(const char *path)
{
    if (path == NULL)
        return MOIRAI_EINVAL;
    /* Refused before the file is touched, so a busy recorder does not
     * truncate an existing trace. */
    if (moirai_trace_recording())
        return -EBUSY;
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -errno;
    int rc = moirai_trace_write_json(f);
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}
