/* Logging.
 *
 * Messages at or above the threshold go to the sink (stderr by default).
 * The threshold starts from the MOIRAI_LOG environment variable, read when
 * the library loads: one of trace, debug, info, warn, error, off (case does
 * not matter); unset or unrecognised means warn. A disabled MOIRAI_LOG()
 * costs one relaxed load and one predictable branch: its arguments are not
 * evaluated. */
#ifndef MOIRAI_CORE_LOG_H
#define MOIRAI_CORE_LOG_H

#include <moirai/core/atomic.h>
#include <moirai/core/export.h>

/* Message severities, least severe first. A message is delivered when its
 * level is at or above the threshold; MOIRAI_LOG_OFF as the threshold
 * delivers nothing. */
typedef enum moirai_log_level {
    MOIRAI_LOG_TRACE = 0, /* the most detailed messages */
    MOIRAI_LOG_DEBUG = 1, /* details for debugging */
    MOIRAI_LOG_INFO = 2,  /* informational messages */
    MOIRAI_LOG_WARN = 3,  /* warnings; the default threshold */
    MOIRAI_LOG_ERROR = 4, /* errors */
    MOIRAI_LOG_OFF = 5,   /* as a threshold: nothing is delivered */
} moirai_log_level_t;

/* A sink receives one formatted message (no trailing newline). Calls into
 * the sink are serialised by Moirai, so a sink needs no lock of its own,
 * but it must not log through Moirai itself. */
typedef void (*moirai_log_cb)(void *arg, moirai_log_level_t level, const char *message);

#ifdef __cplusplus
extern "C" {
#endif

/* The current threshold. Internal to the MOIRAI_LOG() macro; use
 * moirai_log_level_get() / moirai_log_level_set() instead. */
MOIRAI_CORE_API extern MOIRAI_ATOMIC(int) moirai__log_threshold;

/* Sets the threshold; MOIRAI_LOG_OFF silences everything. Thread-safe;
 * other threads see the change promptly (relaxed: a message racing with the
 * change may go either way). Returns 0, or -EINVAL for an unknown level. */
MOIRAI_CORE_API int moirai_log_level_set(moirai_log_level_t level);

/* The current threshold. Thread-safe. */
MOIRAI_CORE_API moirai_log_level_t moirai_log_level_get(void);

/* Parses "trace", "debug", "info", "warn", "error" or "off" (any case) into
 * `*out`. Returns 0, or -EINVAL for NULL or any other text. */
MOIRAI_CORE_API int moirai_log_level_parse(const char *text, moirai_log_level_t *out);

/* The lower-case name of `level`, or "unknown". */
MOIRAI_CORE_API const char *moirai_log_level_name(moirai_log_level_t level);

/* Installs `sink` with its `arg`; NULL restores the stderr sink. Blocks
 * while another thread is inside the sink, so once it returns the old sink
 * is no longer called. Thread-safe. */
MOIRAI_CORE_API void moirai_log_sink_set(moirai_log_cb sink, void *arg);

/* Formats and delivers a message if `level` passes the threshold. Messages
 * longer than 1023 bytes are truncated. Blocks only while another thread is
 * inside the sink. Thread-safe. */
MOIRAI_CORE_API void moirai_log_write(moirai_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

/* The threshold, read with a relaxed load in the caller's own language
 * (a message racing with a change may go either way). Internal to the
 * macros below. */
#ifdef __cplusplus
#define MOIRAI__LOG_THRESHOLD() moirai__log_threshold.load(std::memory_order_relaxed)
#else
#define MOIRAI__LOG_THRESHOLD() atomic_load_explicit(&moirai__log_threshold, memory_order_relaxed)
#endif

/* True when a message at `level` would be delivered. */
#define MOIRAI_LOG_ENABLED(level) __builtin_expect((int)(level) >= MOIRAI__LOG_THRESHOLD(), 0)

/* Logs printf-style at `level`; the arguments are evaluated only when the
 * level is enabled. */
#define MOIRAI_LOG(level, ...)                                                                     \
    do {                                                                                           \
        if (MOIRAI_LOG_ENABLED(level))                                                             \
            moirai_log_write((level), __VA_ARGS__);                                                \
    } while (0)

#endif
