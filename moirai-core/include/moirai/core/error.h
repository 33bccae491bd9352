/* Errors.
 *
 * Every fallible Moirai function returns int: 0 on success or a negative
 * errno value. The MOIRAI_E* names below alias those values so code reads
 * the same whichever spelling it uses. If a call returns an error, its
 * callback never runs and nothing the caller handed over was kept. */
#ifndef MOIRAI_CORE_ERROR_H
#define MOIRAI_CORE_ERROR_H

#include <errno.h>

#include <moirai/core/export.h>

#define MOIRAI_OK        0            /* success (every error is negative) */
#define MOIRAI_EINVAL    (-EINVAL)    /* invalid argument */
#define MOIRAI_ENOMEM    (-ENOMEM)    /* allocation failed (or a pool is at capacity) */
#define MOIRAI_ETIMEDOUT (-ETIMEDOUT) /* a deadline passed before the wait was satisfied */
#define MOIRAI_ECANCELED (-ECANCELED) /* the operation or task was cancelled */
#define MOIRAI_EAGAIN    (-EAGAIN)    /* would block; try again (try_ variants) */
#define MOIRAI_EPIPE     (-EPIPE)     /* the channel or queue is closed */
#define MOIRAI_EBUSY     (-EBUSY)     /* the resource is in use (e.g. a running task) */
#define MOIRAI_EALREADY  (-EALREADY)  /* already done (e.g. a handle completed twice) */
#define MOIRAI_ENOENT    (-ENOENT)    /* no such key or entry */
#define MOIRAI_EEXIST    (-EEXIST)    /* the key or entry already exists */
#define MOIRAI_ENOSYS    (-ENOSYS)    /* not supported by this kernel or build */
#define MOIRAI_EPERM     (-EPERM)     /* not permitted (e.g. real-time policy without privilege) */
#define MOIRAI_EOVERFLOW (-EOVERFLOW) /* a count or size would overflow */
#define MOIRAI_EDEADLK   (-EDEADLK)   /* the call would deadlock */
#define MOIRAI_ENOTSUP   (-ENOTSUP)   /* the operation is not supported here */
#define MOIRAI_ESHUTDOWN (-ESHUTDOWN) /* the executor or runtime is shutting down */
#define MOIRAI_ERANGE    (-ERANGE)    /* a value is out of range */
#define MOIRAI_EIO       (-EIO)       /* an I/O error reported by the OS */

#ifdef __cplusplus
extern "C" {
#endif

/* A short English description of `err`, which may be 0, a negative errno
 * (as Moirai returns) or a positive errno. Unknown codes give
 * "unknown error". Never blocks; thread-safe; the string is static and must
 * not be freed. */
MOIRAI_CORE_API const char *moirai_strerror(int err);

/* The symbolic name of `err` ("EINVAL", "ETIMEDOUT", ...), or "UNKNOWN".
 * Same rules as moirai_strerror(). */
MOIRAI_CORE_API const char *moirai_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif
