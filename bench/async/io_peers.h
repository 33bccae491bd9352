/* moirai-bench, suite "async", I/O cases: the C peers and the helpers the
 * I/O cases share (bench/async/bench_async_io.c runs them).
 *
 * Every peer here is compiled into moirai-bench itself: libuv is already
 * linked (moirai-async is built on it), and epoll and pread are system
 * calls. The Go and Tokio peers of the same cases are entry points of the
 * shared modules of bench/async/peer.h.
 *
 * Topology: every implementation keeps client and server in this one
 * process (a wake-up across processes costs 15-20 us on the reference
 * machine, more than a loopback round trip in one process), except for
 * http_hello_keepalive, whose client is always the separate `wrk` process.
 *
 * Each function returns its metric, or a negative value (with the reason
 * on stderr) if it could not set up or its work came back wrong. None is
 * thread-safe: the bench calls them from its one thread. */
#ifndef MOIRAI_BENCH_ASYNC_IO_PEERS_H
#define MOIRAI_BENCH_ASYNC_IO_PEERS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

/* The message size of the TCP echo cases. */
#define IO_ECHO_BYTES 64
/* The connections of tcp_echo_100c. */
#define IO_ECHO_CONNS 100
/* Untimed round trips each echo client makes before the clock starts. */
#define IO_ECHO_WARM_UP 100

/* The one response of every HTTP server of http_hello_keepalive; each
 * server answers every complete request (a header block ending in an empty
 * line) on a connection with it, and keeps the connection open. */
#define IO_HTTP_RESPONSE                                                                           \
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"

/* file_read_4k: the file, the block, the readers. */
#define IO_FILE_BYTES   ((uint64_t)64 << 20)
#define IO_FILE_BLOCK   4096
#define IO_FILE_BLOCKS  (IO_FILE_BYTES / IO_FILE_BLOCK)
#define IO_FILE_READERS 64

/* timer_churn: the timer objects, armed 1-2 s ahead. */
#define IO_TIMER_OBJECTS 1024

/* ---- shared helpers (peer_io_common.c) ---- */

/* Nanoseconds of `ns` over `ops` operations (1 if 0). */
double io_per_op(uint64_t t0, uint64_t t1, uint64_t ops);

/* CPU time (user + system) of a rusage, in ns. */
int64_t io_rusage_ns(const struct rusage *ru);

/* A listening TCP socket on 127.0.0.1, an ephemeral port, blocking, with
 * SO_REUSEADDR and a backlog of 1024; its port in `*port`. Returns the
 * descriptor or -errno. */
int io_listen_loopback(int *port);

/* Counts the complete HTTP requests at the start of `buf[0..len)` (each
 * ends with "\r\n\r\n"; the benchmark's requests have no body). Returns the
 * count and sets `*used` to the bytes they take. */
size_t io_http_requests(const char *buf, size_t len, size_t *used);

/* The 64 MiB file of file_read_4k: created on first use in $TMPDIR (or
 * /tmp), unlinked at once, filled so that the first 8 bytes of block b hold
 * b, and read through once so that it sits in the page cache. The
 * descriptor stays open for the process's life. Returns it or -errno. */
int io_file_fd(void);

/* Whether `buf`, read from block `block` of that file, holds its number. */
int io_file_block_ok(const unsigned char *buf, uint64_t block);

/* A small xorshift generator for the random block numbers. */
static inline uint64_t io_rand_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

/* ---- libuv peers (peer_uv_net.c, peer_uv_timer.c, peer_uv_fs.c) ---- */

/* tcp_echo_rtt: one libuv loop on the calling thread holds a server and
 * one client; the client sends 64 B, the server echoes them, the client
 * waits for all 64 and sends again, `iters` times. Returns us per round
 * trip. */
double io_uv_echo_rtt(uint64_t iters);

/* tcp_echo_100c: the same loop with 100 clients, each making `iters` / 100
 * sequential round trips. Returns ns per request overall. */
double io_uv_echo_100c(uint64_t iters);

/* timer_churn: IO_TIMER_OBJECTS uv_timer_t on a loop of the calling
 * thread, armed 1-2 s ahead (uv_timer_start) then all disarmed
 * (uv_timer_stop), until `iters` pairs. Returns ns per pair. */
double io_uv_timer_churn(uint64_t iters);

/* file_read_4k: `iters` random 4 KiB uv_fs_read calls on the file, 64 in
 * flight at any time, on libuv's thread pool (its default of 4 threads),
 * completions on a loop of the calling thread. Returns ns per read. */
double io_uv_file_read(uint64_t iters);

/* file_read_4k: `iters` random 4 KiB pread calls from 2 threads. Returns
 * ns per read. */
double io_pread_file_read(uint64_t iters);

/* ---- HTTP servers (peer_uv_http.c, peer_epoll_http.c) ---- */

/* A server of http_hello_keepalive running on threads of its own while
 * wrk drives it. start: listens on 127.0.0.1 and an ephemeral port, sets
 * `*port`, returns 0 or -errno. stop: closes every connection, joins its
 * threads, returns 0 or -errno. */
typedef struct io_http_server {
    int (*start)(int *port);
    int (*stop)(void);
} io_http_server_t;

/* libuv: one loop on one thread of its own. */
extern const io_http_server_t io_uv_http;
/* epoll: one level-triggered epoll loop on one thread of its own. */
extern const io_http_server_t io_epoll_http;

#endif
