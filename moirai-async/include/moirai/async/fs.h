/* Files and directories that park the calling fiber, not its worker.
 *
 * Each call is the POSIX call of the same name, run on libuv's thread pool
 * (through the runtime's reactor thread) while the caller waits: a fiber
 * parks and its worker runs other fibers; a plain thread sleeps. Reads
 * first try preadv2(RWF_NOWAIT) on the calling thread, which answers from
 * the page cache without a thread hop; only data that is not cached (or a
 * file system without RWF_NOWAIT: tmpfs) goes to the pool.
 *
 * Common to every call:
 * - `rt` is the runtime whose reactor runs the operation (NULL: -EINVAL).
 * - Blocks: parks a fiber, or sleeps a plain thread, until the operation
 *   completes. The _timed variant also returns -ETIMEDOUT once `deadline`
 *   (absolute, moirai_clock_now_ns() scale; MOIRAI_DEADLINE_NEVER: none)
 *   has passed; a deadline already passed fails at once and starts
 *   nothing (closes excepted, see moirai_fs_close()).
 * - Cancellation: cancelling the handle of a fiber waiting in a call makes
 *   the call return -ECANCELED promptly, and a fiber already cancelled gets
 *   -ECANCELED at once without starting anything (the token is sticky;
 *   closes excepted). When the call returns -ECANCELED or -ETIMEDOUT, an
 *   operation that was still queued in the thread pool has been withdrawn
 *   and never runs; one a pool thread already runs cannot be stopped, so
 *   it completes in the background and its result is discarded: a
 *   descriptor a cancelled open returned is closed, a cancelled write,
 *   rename, unlink, mkdir, rmdir or fsync may or may not have happened,
 *   and the caller's buffer is never touched after the call returned (the
 *   slow path reads and writes through a buffer of its own). An
 *   operation that completed before the cancellation reached it returns
 *   its result.
 * - Thread-safety: any thread or fiber may call; calls on one descriptor
 *   from several callers behave as the POSIX calls do.
 * - Memory ordering: what the caller wrote before a call happens before
 *   the operation runs; what the operation produced happens before the
 *   call returns.
 * - Errors: the errno of the POSIX call, negated (-ENOENT, -EACCES,
 *   -EBADF, -EISDIR, -ENOTEMPTY, ...), plus -EINVAL (NULL rt, path or
 *   buffer, bad arguments), -ENOMEM (no memory for the operation; nothing
 *   happened), -ECANCELED and -ETIMEDOUT (above).
 * - The runtime must outlive the call. moirai_runtime_destroy() waits for
 *   detached operations still running in the pool (an open of a FIFO with
 *   no writer keeps it waiting until a writer appears). */
#ifndef MOIRAI_ASYNC_FS_H
#define MOIRAI_ASYNC_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <moirai/async/export.h>
#include <moirai/async/runtime.h>

/* The most bytes one read or write moves when it goes through the thread
 * pool (its buffer is allocated per call): a larger `len` gives a short
 * count, as read(2) and write(2) may; loop for more. A read answered from
 * the page cache is not limited by it. */
#define MOIRAI_FS_IO_MAX ((size_t)16 * 1024 * 1024)

/* One directory entry. `type` is a <dirent.h> DT_ value (DT_REG, DT_DIR,
 * DT_LNK, DT_FIFO, DT_SOCK, DT_CHR, DT_BLK) or DT_UNKNOWN when the file
 * system does not say. */
typedef struct moirai_fs_dirent {
    const char *name;
    int type;
} moirai_fs_dirent_t;

/* An open directory stream (moirai_fs_dir_open). Opaque. */
typedef struct moirai_fs_dir moirai_fs_dir_t;

#ifdef __cplusplus
extern "C" {
#endif

/* open(2): opens `path` with `flags` (O_CLOEXEC is always added) and
 * `mode` (used with O_CREAT). Returns the descriptor, or a negative
 * errno: -EINVAL (NULL rt or path), -ENOENT, -EACCES, -EEXIST, -EISDIR,
 * -EMFILE, -ENOTDIR, ..., -ENOMEM, -ECANCELED, -ETIMEDOUT (a descriptor opened
 * after the call gave up is closed). */
MOIRAI_ASYNC_API int moirai_fs_open(moirai_runtime_t *rt, const char *path, int flags, int mode);
MOIRAI_ASYNC_API int moirai_fs_open_timed(moirai_runtime_t *rt, uint64_t deadline, const char *path,
                                          int flags, int mode);

/* pread(2) of up to `len` bytes at `offset` (-1: at the file position,
 * which advances, as read(2)). Tries preadv2(RWF_NOWAIT) on the calling
 * thread first (cached data, no wait); otherwise reads on the pool into
 * an own buffer (at most MOIRAI_FS_IO_MAX bytes) and copies. Returns the
 * bytes read (0 at end of file; fewer than `len` when only part was
 * cached or at the end), or -EINVAL (NULL rt or buf, len > SSIZE_MAX,
 * offset < -1), -EBADF (fd < 0, closed, or not open for reading),
 * -EISDIR, -EIO, -ENOMEM, -ECANCELED, -ETIMEDOUT (buf untouched). */
MOIRAI_ASYNC_API ssize_t moirai_fs_read(moirai_runtime_t *rt, int fd, void *buf, size_t len,
                                        int64_t offset);
MOIRAI_ASYNC_API ssize_t moirai_fs_read_timed(moirai_runtime_t *rt, uint64_t deadline, int fd,
                                              void *buf, size_t len, int64_t offset);

/* pwrite(2) of up to `len` bytes (at most MOIRAI_FS_IO_MAX) at `offset`
 * (-1: at the file position, as write(2); with O_APPEND, at the end). The
 * bytes are copied before the call waits. Returns the bytes written, or
 * -EINVAL (NULL rt or buf, len > SSIZE_MAX, offset < -1), -EBADF (fd < 0,
 * closed, or not open for writing), -ENOSPC, -EFBIG, -EIO, -ENOMEM,
 * -ECANCELED, -ETIMEDOUT (the write may or may not have happened). */
MOIRAI_ASYNC_API ssize_t moirai_fs_write(moirai_runtime_t *rt, int fd, const void *buf, size_t len,
                                         int64_t offset);
MOIRAI_ASYNC_API ssize_t moirai_fs_write_timed(moirai_runtime_t *rt, uint64_t deadline, int fd,
                                               const void *buf, size_t len, int64_t offset);

/* close(2). The close is always started, also by a cancelled fiber and
 * past the deadline, and never withdrawn: after any result but -EINVAL
 * and -ENOMEM the descriptor is released (after -ECANCELED or -ETIMEDOUT
 * the close finishes in the background, once a pool thread is free):
 * never use or close it again. Returns 0, -EINVAL (NULL rt), -EBADF (fd
 * < 0 or not open), -EIO, -ENOMEM (nothing happened: the descriptor is
 * still open), -ECANCELED, -ETIMEDOUT (not waited for). */
MOIRAI_ASYNC_API int moirai_fs_close(moirai_runtime_t *rt, int fd);
MOIRAI_ASYNC_API int moirai_fs_close_timed(moirai_runtime_t *rt, uint64_t deadline, int fd);

/* fsync(2): the file's data and metadata reach the device. Returns 0,
 * -EINVAL (NULL rt, or a file that cannot be synced), -EBADF, -EIO,
 * -ENOSPC, -ENOMEM, -ECANCELED, -ETIMEDOUT (the sync goes on). */
MOIRAI_ASYNC_API int moirai_fs_fsync(moirai_runtime_t *rt, int fd);
MOIRAI_ASYNC_API int moirai_fs_fsync_timed(moirai_runtime_t *rt, uint64_t deadline, int fd);

/* stat(2) of `path` (symbolic links followed) into `*st`. Returns 0, or
 * -EINVAL (NULL rt, path or st), -ENOENT, -ENOTDIR, -EACCES, -ELOOP,
 * -ENAMETOOLONG, -ENOMEM, -ECANCELED, -ETIMEDOUT (*st untouched on every
 * error). */
MOIRAI_ASYNC_API int moirai_fs_stat(moirai_runtime_t *rt, const char *path, struct stat *st);
MOIRAI_ASYNC_API int moirai_fs_stat_timed(moirai_runtime_t *rt, uint64_t deadline, const char *path,
                                          struct stat *st);

/* rename(2) `from` to `to` (atomically replacing `to`). Returns 0, or
 * -EINVAL (NULL rt or a path, or `to` inside `from`), -ENOENT, -EACCES,
 * -EISDIR, -ENOTDIR, -ENOTEMPTY, -EXDEV, -ENOMEM, -ECANCELED, -ETIMEDOUT
 * (the rename may or may not have happened). */
MOIRAI_ASYNC_API int moirai_fs_rename(moirai_runtime_t *rt, const char *from, const char *to);
MOIRAI_ASYNC_API int moirai_fs_rename_timed(moirai_runtime_t *rt, uint64_t deadline,
                                            const char *from, const char *to);

/* unlink(2). Returns 0, or -EINVAL (NULL rt or path), -ENOENT, -EISDIR,
 * -EACCES, -EPERM, -ENOMEM, -ECANCELED, -ETIMEDOUT (may have happened). */
MOIRAI_ASYNC_API int moirai_fs_unlink(moirai_runtime_t *rt, const char *path);
MOIRAI_ASYNC_API int moirai_fs_unlink_timed(moirai_runtime_t *rt, uint64_t deadline,
                                            const char *path);

/* mkdir(2) with `mode` (masked by the umask). Returns 0, or -EINVAL (NULL
 * rt or path), -EEXIST, -ENOENT, -ENOTDIR, -EACCES, -ENOMEM, -ECANCELED,
 * -ETIMEDOUT (may have happened). */
MOIRAI_ASYNC_API int moirai_fs_mkdir(moirai_runtime_t *rt, const char *path, int mode);
MOIRAI_ASYNC_API int moirai_fs_mkdir_timed(moirai_runtime_t *rt, uint64_t deadline,
                                           const char *path, int mode);

/* rmdir(2). Returns 0, or -EINVAL (NULL rt or path), -ENOENT, -ENOTDIR,
 * -ENOTEMPTY, -EBUSY, -EACCES, -ENOMEM, -ECANCELED, -ETIMEDOUT (may have
 * happened). */
MOIRAI_ASYNC_API int moirai_fs_rmdir(moirai_runtime_t *rt, const char *path);
MOIRAI_ASYNC_API int moirai_fs_rmdir_timed(moirai_runtime_t *rt, uint64_t deadline,
                                           const char *path);

/* Lists the directory `path` in one call: stores an array of its entries
 * (without "." and "..", sorted by name in strcmp order) in `*entries`
 * and their number in `*count`. The array and its names are one
 * allocation, freed with moirai_fs_dirents_free(); an empty directory
 * gives NULL and 0. Returns 0, or -EINVAL (NULL rt, path, entries or
 * count), -ENOENT, -ENOTDIR, -EACCES, -ENOMEM, -ECANCELED, -ETIMEDOUT
 * (*entries and *count untouched on every error). */
MOIRAI_ASYNC_API int moirai_fs_scandir(moirai_runtime_t *rt, const char *path,
                                       moirai_fs_dirent_t **entries, size_t *count);
MOIRAI_ASYNC_API int moirai_fs_scandir_timed(moirai_runtime_t *rt, uint64_t deadline,
                                             const char *path, moirai_fs_dirent_t **entries,
                                             size_t *count);

/* Frees what moirai_fs_scandir() stored. NULL is ignored. Never blocks. */
MOIRAI_ASYNC_API void moirai_fs_dirents_free(moirai_fs_dirent_t *entries);

/* Opens the directory `path` for reading entry by entry; `*out` is the
 * stream, closed with moirai_fs_dir_close(). A stream is used by one
 * caller at a time. Returns 0, or -EINVAL (NULL rt, out or path),
 * -ENOENT, -ENOTDIR, -EACCES, -EMFILE, -ENOMEM, -ECANCELED, -ETIMEDOUT
 * (*out untouched on every error; a directory opened after the call gave
 * up is closed). */
MOIRAI_ASYNC_API int moirai_fs_dir_open(moirai_runtime_t *rt, moirai_fs_dir_t **out,
                                        const char *path);
MOIRAI_ASYNC_API int moirai_fs_dir_open_timed(moirai_runtime_t *rt, uint64_t deadline,
                                              moirai_fs_dir_t **out, const char *path);

/* Reads the next entry of `dir` (never "." or ".."; in the directory's
 * own order) into `*entry`; entry->name stays valid until the next read
 * or the close of `dir`. Entries are fetched in batches, so most calls
 * return without waiting. Returns 1 (an entry), 0 (no more entries), or
 * -EINVAL (NULL rt, dir or entry), -EBADFD (an earlier read of this
 * stream was cancelled or timed out after it had started: its position
 * is lost, only moirai_fs_dir_close() remains), -EIO, -ENOMEM,
 * -ECANCELED, -ETIMEDOUT (a read refused at once because the fiber was
 * already cancelled or the deadline had passed leaves the stream
 * usable). */
MOIRAI_ASYNC_API int moirai_fs_dir_read(moirai_runtime_t *rt, moirai_fs_dir_t *dir,
                                        moirai_fs_dirent_t *entry);
MOIRAI_ASYNC_API int moirai_fs_dir_read_timed(moirai_runtime_t *rt, uint64_t deadline,
                                              moirai_fs_dir_t *dir, moirai_fs_dirent_t *entry);

/* Closes `dir` and frees it, whatever the result: like
 * moirai_fs_close() the close is always started and never withdrawn
 * (after -ECANCELED or -ETIMEDOUT it finishes in the background, after
 * any read of the stream still running). Allocates nothing (the close was prepared by the open), so
 * it cannot fail for want of memory. NULL dir is ignored (returns 0).
 * Returns 0, -EINVAL (NULL rt; `dir` is then not closed), -EIO,
 * -ECANCELED, -ETIMEDOUT. */
MOIRAI_ASYNC_API int moirai_fs_dir_close(moirai_runtime_t *rt, moirai_fs_dir_t *dir);
MOIRAI_ASYNC_API int moirai_fs_dir_close_timed(moirai_runtime_t *rt, uint64_t deadline,
                                               moirai_fs_dir_t *dir);

#ifdef __cplusplus
}
#endif

#endif
