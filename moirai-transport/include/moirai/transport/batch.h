/* moirai-transport: the adaptive batcher.
 *
 * A sender-side batcher over any transport (a channel, a shared-memory
 * ring, a socket): it frames small messages into one contiguous buffer and
 * hands the buffer to a sink callback. When the consumer keeps up, each
 * message goes to the sink at once (no added latency); when the consumer
 * is behind, messages are coalesced, and a batch goes out when it reaches
 * its size bound or when its oldest message has waited the flush deadline,
 * whichever comes first. The policy, its bounds and the wire format are in
 * docs/transport.md, "Adaptive batching".
 *
 * Wire format of a batch: messages back to back, each a 4-byte length in
 * the host's byte order (uint32_t, unaligned) followed by that many bytes,
 * no padding. moirai_batch_next() walks it.
 *
 * Thread-safety: every function on one batcher is thread-safe (sends only
 * from one thread at a time with cfg.single_sender); sends from several
 * threads are serialized (a moirai_mutex_t, which parks a fiber rather
 * than its worker), and the sink is called by one thread at a time
 * (holding the batcher's lock, or the single sender in its lock-free
 * path), batches in the order their messages were accepted. The sink and the busy callback must not
 * call back into the same batcher. */
#ifndef MOIRAI_TRANSPORT_BATCH_H
#define MOIRAI_TRANSPORT_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <moirai/transport/export.h>

/* Receives one batch: `len` bytes holding `count` framed messages (see the
 * wire format above). May block until the transport takes the bytes
 * (that is the batcher's back-pressure). Returns 0 once the bytes are
 * taken (the buffer is the batcher's again when it returns), or a negative
 * errno: the batch then stays in the batcher, whole and in order, to be
 * offered again at the next flush, and the error reaches the caller whose
 * call triggered the flush. */
typedef int (*moirai_batch_sink_cb)(void *arg, const void *buf, size_t len, uint32_t count);

/* Says whether the consumer is behind: nonzero while it has not taken
 * everything the sink handed over (a ring or channel not yet drained, a
 * socket with unread bytes queued). Must not block; called by one thread
 * at a time, by a send whose message starts a batch or doubles it (the
 * batch's 1st, 2nd, 4th, 8th, ... message). */
typedef int (*moirai_batch_busy_cb)(void *arg);

/* Default bounds (a zeroed config field means its default). */
#define MOIRAI_BATCH_DEFAULT_MAX_BYTES   4096u
#define MOIRAI_BATCH_DEFAULT_DEADLINE_NS UINT64_C(100000) /* 100 us */
/* Accepted ranges (outside them: -EINVAL). */
#define MOIRAI_BATCH_MIN_MAX_BYTES   8u
#define MOIRAI_BATCH_MAX_MAX_BYTES   (64u * 1024u * 1024u)
#define MOIRAI_BATCH_MAX_DEADLINE_NS UINT64_C(10000000000) /* 10 s */
/* The bytes of framing in front of each message. */
#define MOIRAI_BATCH_FRAME_HEADER 4u
/* Buckets of the messages-per-batch histogram: bucket i counts batches of
 * [2^i, 2^(i+1)) messages; the last one counts everything above. */
#define MOIRAI_BATCH_HIST_BUCKETS 16

/* How to build a batcher. Fill it with moirai_batch_config_init(); a
 * zeroed field means its default. */
typedef struct moirai_batch_config {
    /* Receives the batches. Required: NULL is -EINVAL. */
    moirai_batch_sink_cb sink;
    /* Tells whether the consumer is behind. NULL: the consumer is taken as
     * always behind, so batches go out only by size or by deadline (pure
     * coalescing, as Nagle's algorithm). */
    moirai_batch_busy_cb busy;
    /* Passed first to `sink` and `busy`. */
    void *arg;
    /* Size bound: most bytes one batch may hold, framing included.
     * 0: MOIRAI_BATCH_DEFAULT_MAX_BYTES. A message longer than
     * max_bytes - MOIRAI_BATCH_FRAME_HEADER is refused. */
    size_t max_bytes;
    /* Most messages one batch may hold. 0: no bound but max_bytes. */
    uint32_t max_messages;
    /* Flush deadline: the longest a message waits in the batcher before
     * its batch is handed to the sink (plus the time to wake a thread,
     * and the sink's own blocking). 0: MOIRAI_BATCH_DEFAULT_DEADLINE_NS. */
    uint64_t deadline_ns;
    /* false (default): a flusher thread of the batcher enforces the
     * deadline, parked while the batcher is empty. true: no thread; the
     * caller enforces it by calling moirai_batch_poll() by the time that
     * function (or moirai_batch_next_deadline()) names. */
    bool manual_deadline;
    /* false (default): any number of threads may send at once; each send
     * takes the batcher's lock. true: the caller promises that one thread
     * at a time calls moirai_batch_send() (flush, poll and stats may come
     * from any thread); sends then take no lock, and the threads that
     * need the buffer pay for it instead, with a membarrier(2) call, at
     * most once per deadline period from the flusher. Where the kernel
     * lacks MEMBARRIER_CMD_PRIVATE_EXPEDITED (before Linux 4.14), sends
     * take the lock as with false. Two threads sending at once on a
     * single_sender batcher is a data race. */
    bool single_sender;
} moirai_batch_config_t;

/* A snapshot of the batcher's decisions. */
typedef struct moirai_batch_stats {
    uint64_t messages;                        /* messages accepted by send */
    uint64_t bytes;                           /* their payload bytes (framing not counted) */
    uint64_t batches;                         /* batches the sink took */
    uint64_t sent_messages;                   /* messages in those batches */
    uint64_t flush_idle;                      /* batches sent at once: the consumer kept up */
    uint64_t flush_size;                      /* batches sent full (max_bytes or max_messages) */
    uint64_t flush_deadline;                  /* batches sent because the oldest message hit
                                               * the deadline */
    uint64_t flush_explicit;                  /* batches sent by moirai_batch_flush or destroy */
    uint64_t sink_errors;                     /* sink calls that returned an error */
    uint64_t max_batch_messages;              /* the largest batch, in messages */
    uint64_t max_wait_ns;                     /* the longest a message waited from its send to
                                               * the start of the sink call that took it */
    uint64_t hist[MOIRAI_BATCH_HIST_BUCKETS]; /* messages per batch */
} moirai_batch_stats_t;

/* A batcher (see above). Opaque; created and destroyed by the functions
 * below. */
typedef struct moirai_batch moirai_batch_t;

#ifdef __cplusplus
extern "C" {
#endif

/* Fills `cfg` with the defaults (all zero). Never blocks. */
MOIRAI_TRANSPORT_API void moirai_batch_config_init(moirai_batch_config_t *cfg);

/* Creates a batcher. Never blocks. Errors: -EINVAL (`out` or `cfg` NULL,
 * `cfg->sink` NULL, max_bytes outside [MOIRAI_BATCH_MIN_MAX_BYTES,
 * MOIRAI_BATCH_MAX_MAX_BYTES], deadline_ns above
 * MOIRAI_BATCH_MAX_DEADLINE_NS), -ENOMEM, -EAGAIN (the flusher thread
 * could not be started). On error *out is untouched. */
MOIRAI_TRANSPORT_API int moirai_batch_create(moirai_batch_t **out,
                                             const moirai_batch_config_t *cfg);

/* Hands what is buffered to the sink, stops the flusher thread and frees
 * the batcher. May block (in the sink). Not to be called while another
 * thread still uses `b`. Returns 0, or the sink's error from that last
 * flush: the batcher is destroyed anyway and the messages of that batch
 * are dropped (call moirai_batch_flush() first to keep them). NULL: 0. */
MOIRAI_TRANSPORT_API int moirai_batch_destroy(moirai_batch_t *b);

/* Accepts one message of `len` bytes (copied; 0 is allowed) and, by the
 * policy, sends it at once, keeps it for a later batch, or sends the
 * batch it completes. Messages reach the sink in the order their sends
 * returned 0. May block: on the batcher's lock and in the sink. Thread-
 * safe; the sink's call happens after this send's call began.
 * Errors: -EINVAL (`b` NULL, or `msg` NULL with `len` > 0), -EMSGSIZE
 * (the framed message exceeds max_bytes), or the sink's error when the
 * batch already buffered had to go out to make room and the sink refused
 * it; on error the message was not accepted and nothing changed. A
 * later failure of the sink to take a batch holding this message (it
 * stays buffered) is reported by the call that retries it. */
MOIRAI_TRANSPORT_API int moirai_batch_send(moirai_batch_t *b, const void *msg, size_t len);

/* Hands everything buffered to the sink now. May block (in the sink).
 * Thread-safe. Returns 0 (also when nothing was buffered), -EINVAL (`b`
 * NULL), or the sink's error (the batch stays buffered). */
MOIRAI_TRANSPORT_API int moirai_batch_flush(moirai_batch_t *b);

/* For manual_deadline batchers (allowed on any): sends the buffered batch
 * if its oldest message has reached the deadline. May block (in the
 * sink). Thread-safe. Stores in `*next` (if not NULL) the absolute time,
 * on moirai_clock_now_ns()'s scale, by which poll must be called again,
 * or MOIRAI_DEADLINE_NEVER when nothing is buffered. Returns 0, -EINVAL
 * (`b` NULL), or the sink's error (the batch stays buffered). */
MOIRAI_TRANSPORT_API int moirai_batch_poll(moirai_batch_t *b, uint64_t *next);

/* Copies the statistics into `*out`. Never blocks long (the batcher's
 * lock). Thread-safe. Returns 0, or -EINVAL (`b` or `out` NULL). */
MOIRAI_TRANSPORT_API int moirai_batch_stats(moirai_batch_t *b, moirai_batch_stats_t *out);

/* Walks a batch on the receiving side: reads the frame at `*offset` in
 * `buf` (`len` bytes), stores the message's start and length, and
 * advances `*offset` past it. Never blocks; touches nothing outside
 * [buf, buf + len), whatever the bytes say (the sender is not trusted).
 * Returns 1 for a message, 0 when no whole frame starts at `*offset`
 * (the end of the batch; with a byte stream, the rest of a frame is still
 * to come: `*offset` is then where it starts), -EINVAL (`offset`, `msg`
 * or `msg_len` NULL, `buf` NULL with `len` > 0, or `*offset` > `len`). */
MOIRAI_TRANSPORT_API int moirai_batch_next(const void *buf, size_t len, size_t *offset,
                                           const void **msg, size_t *msg_len);

#ifdef __cplusplus
}
#endif

#endif
