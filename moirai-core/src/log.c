/* Logging: a threshold checked inline by MOIRAI_LOG() and one sink behind a
 * mutex. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include <moirai/core/error.h>
#include <moirai/core/log.h>

/* Longest message delivered to a sink, excluding the terminating NUL
 * (the header promises truncation beyond 1023 bytes). */
#define LOG_MESSAGE_MAX 1024

_Atomic int moirai__log_threshold = MOIRAI_LOG_WARN;

/* The sink and its context change together, so both live under one mutex
 * that also serialises the calls into the sink (the header promises sinks
 * need no lock of their own). */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static moirai_log_cb log_sink;
static void *log_sink_ctx;

static const char *const level_names[] = {
    [MOIRAI_LOG_TRACE] = "trace", [MOIRAI_LOG_DEBUG] = "debug", [MOIRAI_LOG_INFO] = "info",
    [MOIRAI_LOG_WARN] = "warn",   [MOIRAI_LOG_ERROR] = "error", [MOIRAI_LOG_OFF] = "off",
};

/* Runs when the shared library is loaded, before any user code can log,
 * so the environment decides the threshold without a lazy check on the
 * fast path. An unset or unrecognised value keeps the default (warn). */
__attribute__((constructor)) static void log_init_from_env(void)
{
    moirai_log_level_t level;

    if (moirai_log_level_parse(getenv("MOIRAI_LOG"), &level) == 0)
        atomic_store_explicit(&moirai__log_threshold, (int)level, memory_order_relaxed);
}

int moirai_log_level_set(moirai_log_level_t level)
{
    if ((int)level < MOIRAI_LOG_TRACE || (int)level > MOIRAI_LOG_OFF)
        return MOIRAI_EINVAL;
    /* Relaxed: the threshold guards no other data; a message racing with
     * the change may be filtered either way, as the header says. */
    atomic_store_explicit(&moirai__log_threshold, (int)level, memory_order_relaxed);
    return 0;
}

moirai_log_level_t moirai_log_level_get(void)
{
    return (moirai_log_level_t)atomic_load_explicit(&moirai__log_threshold, memory_order_relaxed);
}

int moirai_log_level_parse(const char *text, moirai_log_level_t *out)
{
    if (text == NULL || out == NULL)
        return MOIRAI_EINVAL;
    for (int i = MOIRAI_LOG_TRACE; i <= MOIRAI_LOG_OFF; i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *out = (moirai_log_level_t)i;
            return 0;
        }
    }
    return MOIRAI_EINVAL;
}

const char *moirai_log_level_name(moirai_log_level_t level)
{
    if ((int)level < MOIRAI_LOG_TRACE || (int)level > MOIRAI_LOG_OFF)
        return "unknown";
    return level_names[level];
}

/* The default sink. The whole line is formatted first and written with one
 * call, so that lines stay whole even next to other writers of stderr that
 * do not take our lock. */
static void log_stderr_sink(moirai_log_level_t level, const char *message)
{
    char line[LOG_MESSAGE_MAX + 32];
    int n = snprintf(line, sizeof(line), "moirai: %s: %s\n", moirai_log_level_name(level), message);

    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    (void)fwrite(line, 1, (size_t)n, stderr);
}

void moirai_log_sink_set(moirai_log_cb sink, void *ctx)
{
    pthread_mutex_lock(&log_lock);
    log_sink = sink;
    log_sink_ctx = ctx;
    pthread_mutex_unlock(&log_lock);
}

void moirai_log_write(moirai_log_level_t level, const char *fmt, ...)
{
    char message[LOG_MESSAGE_MAX];
    va_list ap;

    /* OFF is a threshold, not a message level: nothing logged at OFF (or
     * beyond) may get through even when the threshold is OFF. */
    if ((int)level < MOIRAI_LOG_TRACE || (int)level >= MOIRAI_LOG_OFF)
        return;
    if ((int)level < atomic_load_explicit(&moirai__log_threshold, memory_order_relaxed))
        return;
    if (fmt == NULL)
        return;

    /* Formatting happens outside the lock, so only the sink call itself is
     * serialised. vsnprintf truncates and always terminates. */
    va_start(ap, fmt);
    if (vsnprintf(message, sizeof(message), fmt, ap) < 0)
        message[0] = '\0';
    va_end(ap);

    pthread_mutex_lock(&log_lock);
    if (log_sink != NULL)
        log_sink(log_sink_ctx, level, message);
    else
        log_stderr_sink(level, message);
    pthread_mutex_unlock(&log_lock);
}
