/* Error names and descriptions.
 *
 * The table is our own rather than strerror(): strerror() may return a
 * buffer that a later call overwrites (it is not required to be
 * thread-safe), its wording differs between C libraries, and it knows
 * nothing of what the codes mean in Moirai. Every string here is a literal,
 * so both lookups are thread-safe and never allocate. */
#include <limits.h>
#include <stddef.h>

#include <moirai/core/error.h>

/* X(code, name, description). Every MOIRAI_E* code comes first, described
 * as Moirai uses it; the rest are errno values the OS layers of higher
 * modules (files, sockets, processes) pass through unchanged. The lookups
 * below are switch statements over this list, so an alias (two names for
 * one value, as EWOULDBLOCK is for EAGAIN) is a compile-time error rather
 * than a silently unreachable entry. */
#define MOIRAI_ERROR_TABLE(X)                                                                      \
    X(EINVAL, "EINVAL", "invalid argument")                                                        \
    X(ENOMEM, "ENOMEM", "out of memory")                                                           \
    X(ETIMEDOUT, "ETIMEDOUT", "timed out")                                                         \
    X(ECANCELED, "ECANCELED", "operation cancelled")                                               \
    X(EAGAIN, "EAGAIN", "resource temporarily unavailable, try again")                             \
    X(EPIPE, "EPIPE", "channel or queue closed")                                                   \
    X(EBUSY, "EBUSY", "resource busy")                                                             \
    X(EALREADY, "EALREADY", "operation already done")                                              \
    X(ENOENT, "ENOENT", "no such entry")                                                           \
    X(EEXIST, "EEXIST", "entry already exists")                                                    \
    X(ENOSYS, "ENOSYS", "not supported by this kernel or build")                                   \
    X(EPERM, "EPERM", "operation not permitted")                                                   \
    X(EOVERFLOW, "EOVERFLOW", "value too large")                                                   \
    X(EDEADLK, "EDEADLK", "operation would deadlock")                                              \
    X(ENOTSUP, "ENOTSUP", "operation not supported")                                               \
    X(ESHUTDOWN, "ESHUTDOWN", "shutting down")                                                     \
    X(ERANGE, "ERANGE", "value out of range")                                                      \
    X(EIO, "EIO", "input/output error")                                                            \
    X(EINTR, "EINTR", "interrupted system call")                                                   \
    X(EBADF, "EBADF", "bad file descriptor")                                                       \
    X(EACCES, "EACCES", "permission denied")                                                       \
    X(EFAULT, "EFAULT", "bad address")                                                             \
    X(ENODEV, "ENODEV", "no such device")                                                          \
    X(ESRCH, "ESRCH", "no such process")                                                           \
    X(EMFILE, "EMFILE", "too many open files")                                                     \
    X(ENFILE, "ENFILE", "too many open files in system")                                           \
    X(ENOSPC, "ENOSPC", "no space left on device")                                                 \
    X(ENAMETOOLONG, "ENAMETOOLONG", "name too long")                                               \
    X(EMSGSIZE, "EMSGSIZE", "message too long")                                                    \
    X(ENOBUFS, "ENOBUFS", "no buffer space available")                                             \
    X(EADDRINUSE, "EADDRINUSE", "address already in use")                                          \
    X(EADDRNOTAVAIL, "EADDRNOTAVAIL", "address not available")                                     \
    X(ECONNREFUSED, "ECONNREFUSED", "connection refused")                                          \
    X(ECONNRESET, "ECONNRESET", "connection reset by peer")                                        \
    X(ECONNABORTED, "ECONNABORTED", "connection aborted")                                          \
    X(ENOTCONN, "ENOTCONN", "socket is not connected")                                             \
    X(EISCONN, "EISCONN", "socket is already connected")                                           \
    X(EINPROGRESS, "EINPROGRESS", "operation in progress")                                         \
    X(EHOSTUNREACH, "EHOSTUNREACH", "host is unreachable")                                         \
    X(ENETUNREACH, "ENETUNREACH", "network is unreachable")                                        \
    X(ENETDOWN, "ENETDOWN", "network is down")                                                     \
    X(EPROTO, "EPROTO", "protocol error")                                                          \
    X(EOWNERDEAD, "EOWNERDEAD", "owner died")

/* Accepts both signs, as the header promises. INT_MIN has no positive
 * counterpart, and no errno is that large, so it maps to an unknown code. */
static int error_magnitude(int err)
{
    if (err == INT_MIN)
        return -1;
    return err < 0 ? -err : err;
}

const char *moirai_strerror(int err)
{
    switch (error_magnitude(err)) {
    case 0:
        return "success";
#define MOIRAI_ERROR_DESCRIPTION(code, name, description)                                          \
    case code:                                                                                     \
        return description;
        MOIRAI_ERROR_TABLE(MOIRAI_ERROR_DESCRIPTION)
#undef MOIRAI_ERROR_DESCRIPTION
    default:
        return "unknown error";
    }
}

const char *moirai_err_name(int err)
{
    switch (error_magnitude(err)) {
    case 0:
        return "OK";
#define MOIRAI_ERROR_NAME(code, name, description)                                                 \
    case code:                                                                                     \
        return name;
        MOIRAI_ERROR_TABLE(MOIRAI_ERROR_NAME)
#undef MOIRAI_ERROR_NAME
    default:
        return "UNKNOWN";
    }
}
