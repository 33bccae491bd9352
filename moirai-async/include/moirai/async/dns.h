/* Name resolution that parks the calling fiber, not its worker.
 *
 * moirai_dns_resolve() is getaddrinfo(3) run on libuv's thread pool
 * (uv_getaddrinfo, issued by the runtime's reactor thread) while the
 * caller waits: a fiber parks, a plain thread sleeps. Cancellation and
 * deadlines work as for files (moirai/async/fs.h): a lookup still queued
 * is withdrawn; one a pool thread already runs cannot be stopped
 * (getaddrinfo has no cancellation), so it finishes in the background and
 * its result is freed there.
 *
 * getaddrinfo's EAI_ codes become negative errno values:
 *
 *   EAI_NONAME      -ENOENT          node or service not known
 *   EAI_AGAIN       -EAGAIN          temporary failure (name server busy)
 *   EAI_FAIL        -EIO             permanent failure of the name server
 *   EAI_NODATA      -ENODATA         the name exists but has no address
 *   EAI_ADDRFAMILY  -EADDRNOTAVAIL   no address in the requested family
 *   EAI_FAMILY      -EAFNOSUPPORT    ai_family not supported
 *   EAI_SOCKTYPE    -ESOCKTNOSUPPORT ai_socktype not supported
 *   EAI_SERVICE     -EPROTONOSUPPORT service not available for the socket type
 *   EAI_PROTOCOL    -EPROTONOSUPPORT ai_protocol not supported
 *   EAI_BADFLAGS    -EINVAL          invalid ai_flags
 *   EAI_BADHINTS    -EINVAL          invalid hints
 *   EAI_OVERFLOW    -EOVERFLOW       an argument buffer overflowed
 *   EAI_MEMORY      -ENOMEM          out of memory
 *   EAI_CANCELED    -ECANCELED       the lookup was withdrawn
 *   EAI_SYSTEM      -errno           the system error itself */
#ifndef MOIRAI_ASYNC_DNS_H
#define MOIRAI_ASYNC_DNS_H

#include <stdint.h>
#include <sys/socket.h>
#include <netdb.h>

#include <moirai/async/export.h>
#include <moirai/async/runtime.h>

/* <netdb.h> defines it only with POSIX visible (not under strict ISO C,
 * where this header still compiles: declare the tag at file scope). */
struct addrinfo;

#ifdef __cplusplus
extern "C" {
#endif

/* getaddrinfo(3) of `node` and/or `service` (either may be NULL, not
 * both) with `hints` (NULL: none); stores the list in `*res`, freed with
 * moirai_dns_free(). Parks a fiber or sleeps a thread until the answer.
 * Thread-safe. What the caller wrote happens before the lookup; the list
 * is fully written before the call returns. Returns 0, or -EINVAL (NULL rt
 * or res, node and service both NULL), a code of the table above,
 * -ENOMEM, or -ECANCELED (the calling fiber's handle was cancelled before
 * or during the wait). `*res` is untouched on every error. */
MOIRAI_ASYNC_API int moirai_dns_resolve(moirai_runtime_t *rt, const char *node, const char *service,
                                        const struct addrinfo *hints, struct addrinfo **res);

/* As moirai_dns_resolve(), also returning -ETIMEDOUT once `deadline`
 * (absolute, moirai_clock_now_ns() scale; MOIRAI_DEADLINE_NEVER: none)
 * has passed. */
MOIRAI_ASYNC_API int moirai_dns_resolve_timed(moirai_runtime_t *rt, uint64_t deadline,
                                              const char *node, const char *service,
                                              const struct addrinfo *hints, struct addrinfo **res);

/* Frees a list moirai_dns_resolve() stored. NULL is ignored. Never
 * blocks. */
MOIRAI_ASYNC_API void moirai_dns_free(struct addrinfo *res);

#ifdef __cplusplus
}
#endif

#endif
