/* File operations (moirai/async/fs.h): each is a libuv uv_fs_* request
 * issued on the reactor thread and run on libuv's thread pool while the
 * caller parks (poolop.h says how a caller that stops waiting detaches
 * it). Reads first try preadv2(RWF_NOWAIT) on the calling thread: a page
 * cache hit then costs one system call and no thread hop. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#include <moirai/async/fs.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>

#include "async_internal.h"
#include "fs_op.h"
#include "iowait.h"

/* ---- the operation ---------------------------------------------------- */

static void fs_op_destroy(moirai__poolop_t *base)
{
    moirai__fs_op_t *op = (moirai__fs_op_t *)base;
    /* A listing never handed to the caller (the caller detached). */
    moirai_free(op->dirents);
    moirai_free(op);
}

/* What a completed operation nobody waits for leaves behind. Reactor
 * thread. */
static void fs_op_dispose(moirai__poolop_t *base)
{
    moirai__fs_op_t *op = (moirai__fs_op_t *)base;
    if (op->kind == MOIRAI__FS_OPEN && op->result >= 0) {
        /* The caller gave up on this open: the descriptor is nobody's. */
        close((int)op->result);
    } else if (op->kind == MOIRAI__FS_OPENDIR && op->uvdir != NULL) {
        uv_fs_t req;
        /* Without a callback libuv runs closedir here, synchronously: a
         * directory close does not wait for the device. */
        uv_fs_closedir(op->loop, &req, op->uvdir, NULL);
        uv_fs_req_cleanup(&req);
        op->uvdir = NULL;
    }
    /* A scandir listing is freed by fs_op_destroy. */
}

static void fs_start(moirai__poolop_t *base, uv_loop_t *loop);

moirai__fs_op_t *moirai__fs_op_new(moirai__fs_kind_t kind, const char *path, const char *path2,
                                   size_t data_len)
{
    size_t l1 = path != NULL ? strlen(path) + 1 : 0;
    size_t l2 = path2 != NULL ? strlen(path2) + 1 : 0;
    size_t size = sizeof(moirai__fs_op_t) + l1 + l2 + data_len;
    moirai__fs_op_t *op = moirai_malloc(size);
    if (op == NULL)
        return NULL;
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->fd = -1;
    op->result = -EIO;
    char *p = op->extra;
    if (path != NULL) {
        memcpy(p, path, l1);
        op->path = p;
        p += l1;
    }
    if (path2 != NULL) {
        memcpy(p, path2, l2);
        op->path2 = p;
        p += l2;
    }
    op->data = data_len != 0 ? p : NULL;
    op->len = data_len;
    moirai__poolop_init(&op->base, (uv_req_t *)&op->req, fs_start, fs_op_dispose, fs_op_destroy);
    return op;
}

int moirai__fs_op_wait(moirai_runtime_t *rt, moirai__fs_op_t *op, uint64_t deadline)
{
    return moirai__poolop_wait(rt, &op->base, deadline);
}

/* ---- the reactor side ------------------------------------------------- */

static int dirent_type(uv_dirent_type_t t)
{
    switch (t) {
    case UV_DIRENT_FILE:
        return DT_REG;
    case UV_DIRENT_DIR:
        return DT_DIR;
    case UV_DIRENT_LINK:
        return DT_LNK;
    case UV_DIRENT_FIFO:
        return DT_FIFO;
    case UV_DIRENT_SOCKET:
        return DT_SOCK;
    case UV_DIRENT_CHAR:
        return DT_CHR;
    case UV_DIRENT_BLOCK:
        return DT_BLK;
    default:
        return DT_UNKNOWN;
    }
}

/* Turns a completed scandir request into one allocation: the array of
 * `n` entries, then the names. uv_fs_scandir_next frees each entry as it
 * moves on, so the names are gathered in one pass into a block that grows
 * (names recorded as offsets until it stops moving). Reactor thread. */
static void take_listing(moirai__fs_op_t *op)
{
    size_t n = (size_t)op->req.result;
    if (n == 0) {
        op->result = 0;
        return;
    }
    size_t head = n * sizeof(moirai_fs_dirent_t);
    size_t cap = head + n * 32;
    size_t used = head;
    char *block = moirai_malloc(cap);
    moirai_fs_dirent_t *arr = (moirai_fs_dirent_t *)block;
    size_t i = 0;
    uv_dirent_t ent;
    /* Always walked to UV_EOF, even after a failure: libuv 1.44's
     * uv_fs_req_cleanup leaks the last entry of a listing walked to its
     * last entry but not past it. */
    while (uv_fs_scandir_next(&op->req, &ent) == 0) {
        if (block == NULL || i == n)
            continue;
        size_t l = strlen(ent.name) + 1;
        if (used + l > cap) {
            size_t ncap = cap * 2 > used + l ? cap * 2 : used + l;
            char *nb = moirai_realloc(block, ncap);
            if (nb == NULL) {
                moirai_free(block);
                block = NULL;
                continue;
            }
            block = nb;
            arr = (moirai_fs_dirent_t *)block;
            cap = ncap;
        }
        memcpy(block + used, ent.name, l);
        arr[i].name = (const char *)(uintptr_t)used;
        arr[i].type = dirent_type(ent.type);
        used += l;
        i++;
    }
    if (block == NULL) {
        op->result = -ENOMEM;
        return;
    }
    for (size_t k = 0; k < i; k++)
        arr[k].name = block + (uintptr_t)arr[k].name;
    op->dirents = arr;
    op->ndirents = i;
    op->result = 0;
}

static void take_batch(moirai__fs_op_t *op)
{
    size_t n = (size_t)op->req.result;
    for (size_t i = 0; i < n; i++) {
        char *slot = op->data + i * MOIRAI__FS_NAME_SLOT;
        size_t l = strlen(op->batch[i].name);
        if (l >= MOIRAI__FS_NAME_SLOT)
            l = MOIRAI__FS_NAME_SLOT - 1; /* longer than NAME_MAX: not on Linux */
        memcpy(slot, op->batch[i].name, l);
        slot[l] = '\0';
        op->types[i] = dirent_type(op->batch[i].type);
    }
}

static void on_fs_done(uv_fs_t *req)
{
    moirai__fs_op_t *op = req->data;
    ssize_t r = req->result;
    op->result = r;
    if (r >= 0) {
        switch (op->kind) {
        case MOIRAI__FS_STAT:
            op->stat = req->statbuf;
            break;
        case MOIRAI__FS_SCANDIR:
            take_listing(op);
            break;
        case MOIRAI__FS_OPENDIR:
            op->uvdir = req->ptr;
            op->result = 0;
            break;
        case MOIRAI__FS_READDIR:
            take_batch(op);
            break;
        default:
            break;
        }
    }
    uv_fs_req_cleanup(req);
    if (op->kind == MOIRAI__FS_READDIR) {
        /* The stream is idle again: a close that waited for this read
         * may go now. The stream outlives its reads (its close waits). */
        struct moirai_fs_dir *dir = op->dir;
        dir->inflight--;
        if (dir->inflight == 0 && dir->deferred_close != NULL) {
            moirai__fs_op_t *close_op = dir->deferred_close;
            dir->deferred_close = NULL;
            moirai__fs_dir_start_close(close_op);
        }
    }
    moirai__poolop_complete(&op->base);
}

void moirai__fs_dir_start_close(moirai__fs_op_t *op)
{
    int rc = uv_fs_closedir(op->loop, &op->req, op->dir->uvdir, on_fs_done);
    if (rc < 0) {
        op->result = rc;
        moirai__poolop_complete(&op->base);
    }
}

static void fs_start(moirai__poolop_t *base, uv_loop_t *loop)
{
    moirai__fs_op_t *op = (moirai__fs_op_t *)base;
    uv_fs_t *req = &op->req;
    op->loop = loop;
    req->data = op;
    uv_buf_t buf = uv_buf_init(op->data, (unsigned int)op->len);
    int rc;
    switch (op->kind) {
    case MOIRAI__FS_OPEN:
        rc = uv_fs_open(loop, req, op->path, op->flags, op->mode, on_fs_done);
        break;
    case MOIRAI__FS_READ:
        rc = uv_fs_read(loop, req, op->fd, &buf, 1, op->offset, on_fs_done);
        break;
    case MOIRAI__FS_WRITE:
        rc = uv_fs_write(loop, req, op->fd, &buf, 1, op->offset, on_fs_done);
        break;
    case MOIRAI__FS_CLOSE:
        rc = uv_fs_close(loop, req, op->fd, on_fs_done);
        break;
    case MOIRAI__FS_FSYNC:
        rc = uv_fs_fsync(loop, req, op->fd, on_fs_done);
        break;
    case MOIRAI__FS_STAT:
        rc = uv_fs_stat(loop, req, op->path, on_fs_done);
        break;
    case MOIRAI__FS_RENAME:
        rc = uv_fs_rename(loop, req, op->path, op->path2, on_fs_done);
        break;
    case MOIRAI__FS_UNLINK:
        rc = uv_fs_unlink(loop, req, op->path, on_fs_done);
        break;
    case MOIRAI__FS_MKDIR:
        rc = uv_fs_mkdir(loop, req, op->path, op->mode, on_fs_done);
        break;
    case MOIRAI__FS_RMDIR:
        rc = uv_fs_rmdir(loop, req, op->path, on_fs_done);
        break;
    case MOIRAI__FS_SCANDIR:
        rc = uv_fs_scandir(loop, req, op->path, 0, on_fs_done);
        break;
    case MOIRAI__FS_OPENDIR:
        rc = uv_fs_opendir(loop, req, op->path, on_fs_done);
        break;
    case MOIRAI__FS_READDIR:
        op->dir->uvdir->dirents = op->batch;
        op->dir->uvdir->nentries = MOIRAI__FS_DIR_BATCH;
        rc = uv_fs_readdir(loop, req, op->dir->uvdir, on_fs_done);
        if (rc >= 0)
            op->dir->inflight++;
        break;
    case MOIRAI__FS_CLOSEDIR:
        if (op->dir->inflight != 0) {
            /* A detached read still uses the directory: close after it. */
            op->dir->deferred_close = op;
            return;
        }
        moirai__fs_dir_start_close(op);
        return;
    default:
        rc = UV_EINVAL;
        break;
    }
    if (rc < 0) {
        /* libuv refused the request (no memory for a path copy): no
         * callback will run. */
        uv_fs_req_cleanup(req);
        op->result = rc;
        moirai__poolop_complete(&op->base);
    }
}

/* ---- the calls -------------------------------------------------------- */

/* Checks shared by every call: the runtime, the caller's own
 * cancellation (a cancelled fiber's operations fail at once) and a
 * deadline already passed (nothing is started then). */
static int enter(moirai_runtime_t *rt, uint64_t deadline)
{
    if (rt == NULL)
        return -EINVAL;
    int rc = moirai__iowait_check();
    if (rc < 0)
        return rc;
    return moirai_deadline_expired(deadline) ? -ETIMEDOUT : 0;
}

/* Runs an operation that produces only a status or a count. */
static ssize_t run_simple(moirai_runtime_t *rt, moirai__fs_op_t *op, uint64_t deadline)
{
    int rc = moirai__fs_op_wait(rt, op, deadline);
    if (rc < 0)
        return rc;
    ssize_t r = op->result;
    moirai__poolop_release(&op->base);
    return r;
}

static int path_op(moirai_runtime_t *rt, uint64_t deadline, moirai__fs_kind_t kind,
                   const char *path, const char *path2, int mode)
{
    int rc = enter(rt, deadline);
    if (rc < 0)
        return rc;
    if (path == NULL)
        return -EINVAL;
    if (kind == MOIRAI__FS_RENAME && path2 == NULL)
        return -EINVAL;
    moirai__fs_op_t *op = moirai__fs_op_new(kind, path, path2, 0);
    if (op == NULL)
        return -ENOMEM;
    op->mode = mode;
    return (int)run_simple(rt, op, deadline);
}

int moirai_fs_open_timed(moirai_runtime_t *rt, uint64_t deadline, const char *path, int flags,
                         int mode)
{
    int rc = enter(rt, deadline);
    if (rc < 0)
        return rc;
    if (path == NULL)
        return -EINVAL;
    moirai__fs_op_t *op = moirai__fs_op_new(MOIRAI__FS_OPEN, path, NULL, 0);
    if (op == NULL)
        return -ENOMEM;
    op->flags = flags;
    op->mode = mode;
    return (int)run_simple(rt, op, deadline);
}

int moirai_fs_open(moirai_runtime_t *rt, const char *path, int flags, int mode)
{
    return moirai_fs_open_timed(rt, MOIRAI_DEADLINE_NEVER, path, flags, mode);
}

ssize_t moirai_fs_read_timed(moirai_runtime_t *rt, uint64_t deadline, int fd, void *buf, size_t len,
                             int64_t offset)
{
    int rc = enter(rt, deadline);
    if (rc < 0)
        return rc;
    if (buf == NULL || len > SSIZE_MAX || offset < -1)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    /* The fast path: data in the page cache is copied right here, and
     * RWF_NOWAIT makes the kernel say EAGAIN instead of waiting for the
     * device. EOPNOTSUPP: a file system (tmpfs) or file type that does
     * not take the flag. Other errors (EBADF, EISDIR, EINVAL) are the
     * answer the pool would give too. */
    struct iovec iov = {.iov_base = buf, .iov_len = len};
    ssize_t n = preadv2(fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
    if (n >= 0)
        return n;
    int err = errno;
    if (err != EAGAIN && err != EOPNOTSUPP)
        return -err;
    size_t chunk = len < MOIRAI_FS_IO_MAX ? len : MOIRAI_FS_IO_MAX;
    moirai__fs_op_t *op = moirai__fs_op_new(MOIRAI__FS_READ, NULL, NULL, chunk);
    if (op == NULL)
        return -ENOMEM;
    op->fd = fd;
    op->offset = offset;
    rc = moirai__fs_op_wait(rt, op, deadline);
    if (rc < 0)
        return rc;
    n = op->result;
    if (n > 0)
        memcpy(buf, op->data, (size_t)n);
    moirai__poolop_release(&op->base);
    return n;
}

ssize_t moirai_fs_read(moirai_runtime_t *rt, int fd, void *buf, size_t len, int64_t offset)
{
    return moirai_fs_read_timed(rt, MOIRAI_DEADLINE_NEVER, fd, buf, len, offset);
}

ssize_t moirai_fs_write_timed(moirai_runtime_t *rt, uint64_t deadline, int fd, const void *buf,
                              size_t len, int64_t offset)
{
    int rc = enter(rt, deadline);
    if (rc < 0)
        return rc;
    if (buf == NULL || len > SSIZE_MAX || offset < -1)
        return -EINVAL;
    if (fd < 0)
        return -EBADF;
    size_t chunk = len < MOIRAI_FS_IO_MAX ? len : MOIRAI_FS_IO_MAX;
    moirai__fs_op_t *op = moirai__fs_op_new(MOIRAI__FS_WRITE, NULL, NULL, chunk);
    if (op == NULL)
        return -ENOMEM;
    /* Copied now: the pool writes from the operation's buffer, so a
     * write the caller gave up on never reads the caller's memory. */
    if (chunk != 0)
        memcpy(op->data, buf, chunk);
    op->fd = fd;
    op->offset = offset;
    return run_simple(rt, op, deadline);
}

ssize_t moirai_fs_write(moirai_runtime_t *rt, int fd, const void *buf, size_t len, int64_t offset)
{
    return moirai_fs_write_timed(rt, MOIRAI_DEADLINE_NEVER, fd, buf, len, offset);
}

static int fd_op(moirai_runtime_t *rt, uint64_t deadline, moirai__fs_kind_t kind, int fd)
{
    bool closing = kind == MOIRAI__FS_CLOSE;
    /* A close is always started, even by a cancelled caller or after its
     * deadline: the descriptor is released whatever the call returns
     * (fs.h); -ECANCELED and -ETIMEDOUT then only mean it was not waited
     * for. */
    int rc = closing ? (rt == NULL ? -EINVAL : 0) : enter(rt, deadline);
    if (rc < 0)
        return rc;
    if (fd < 0)
        return -EBADF;
    moirai__fs_op_t *op = moirai__fs_op_new(kind, NULL, NULL, 0);
    if (op == NULL)
        return -ENOMEM;
    op->fd = fd;
    /* A close the caller gave up on still happens: never withdrawn. */
    op->base.withdrawable = !closing;
    return (int)run_simple(rt, op, deadline);
}

int moirai_fs_close_timed(moirai_runtime_t *rt, uint64_t deadline, int fd)
{
    return fd_op(rt, deadline, MOIRAI__FS_CLOSE, fd);
}

int moirai_fs_close(moirai_runtime_t *rt, int fd)
{
    return fd_op(rt, MOIRAI_DEADLINE_NEVER, MOIRAI__FS_CLOSE, fd);
}

int moirai_fs_fsync_timed(moirai_runtime_t *rt, uint64_t deadline, int fd)
{
    return fd_op(rt, deadline, MOIRAI__FS_FSYNC, fd);
}

int moirai_fs_fsync(moirai_runtime_t *rt, int fd)
{
    return fd_op(rt, MOIRAI_DEADLINE_NEVER, MOIRAI__FS_FSYNC, fd);
}

/* uv_stat_t has the fields of struct stat, in its own layout. */
static void copy_stat(struct stat *st, const uv_stat_t *u)
{
    memset(st, 0, sizeof(*st));
    st->st_dev = (dev_t)u->st_dev;
    st->st_ino = (ino_t)u->st_ino;
    st->st_mode = (mode_t)u->st_mode;
    st->st_nlink = (nlink_t)u->st_nlink;
    st->st_uid = (uid_t)u->st_uid;
    st->st_gid = (gid_t)u->st_gid;
    st->st_rdev = (dev_t)u->st_rdev;
    st->st_size = (off_t)u->st_size;
    st->st_blksize = (blksize_t)u->st_blksize;
    st->st_blocks = (blkcnt_t)u->st_blocks;
    st->st_atim.tv_sec = u->st_atim.tv_sec;
    st->st_atim.tv_nsec = u->st_atim.tv_nsec;
    st->st_mtim.tv_sec = u->st_mtim.tv_sec;
    st->st_mtim.tv_nsec = u->st_mtim.tv_nsec;
    st->st_ctim.tv_sec = u->st_ctim.tv_sec;
    st->st_ctim.tv_nsec = u->st_ctim.tv_nsec;
}

int moirai_fs_stat_timed(moirai_runtime_t *rt, uint64_t deadline, const char *path, struct stat *st)
{
    int rc = enter(rt, deadline);
    if (rc < 0)
        return rc;
    if (path == NULL || st == NULL)
        return -EINVAL;
    moirai__fs_op_t *op = moirai__fs_op_new(MOIRAI__FS_STAT, path, NULL, 0);
    if (op == NULL)
        return -ENOMEM;
    rc = moirai__fs_op_wait(rt, op, deadline);
    if (rc < 0)
        return rc;
    rc = (int)op->result;
    if (rc == 0)
        copy_stat(st, &op->stat);
    moirai__poolop_release(&op->base);
    return rc;
}

int moirai_fs_stat(moirai_runtime_t *rt, const char *path, struct stat *st)
{
    return moirai_fs_stat_timed(rt, MOIRAI_DEADLINE_NEVER, path, st);
}

int moirai_fs_rename_timed(moirai_runtime_t *rt, uint64_t deadline, const char *from,
                           const char *to)
{
    return path_op(rt, deadline, MOIRAI__FS_RENAME, from, to, 0);
}

int moirai_fs_rename(moirai_runtime_t *rt, const char *from, const char *to)
{
    return path_op(rt, MOIRAI_DEADLINE_NEVER, MOIRAI__FS_RENAME, from, to, 0);
}

int moirai_fs_unlink_timed(moirai_runtime_t *rt, uint64_t deadline, const char *path)
{
    return path_op(rt, deadline, MOIRAI__FS_UNLINK, path, NULL, 0);
}

int moirai_fs_unlink(moirai_runtime_t *rt, const char *path)
{
    return path_op(rt, MOIRAI_DEADLINE_NEVER, MOIRAI__FS_UNLINK, path, NULL, 0);
}

int moirai_fs_mkdir_timed(moirai_runtime_t *rt, uint64_t deadline, const char *path, int mode)
{
    return path_op(rt, deadline, MOIRAI__FS_MKDIR, path, NULL, mode);
}

int moirai_fs_mkdir(moirai_runtime_t *rt, const char *path, int mode)
{
    return path_op(rt, MOIRAI_DEADLINE_NEVER, MOIRAI__FS_MKDIR, path, NULL, mode);
}

int moirai_fs_rmdir_timed(moirai_runtime_t *rt, uint64_t deadline, const char *path)
{
    return path_op(rt, deadline, MOIRAI__FS_RMDIR, path, NULL, 0);
}

int moirai_fs_rmdir(moirai_runtime_t *rt, const char *path)
{
    return path_op(rt, MOIRAI_DEADLINE_NEVER, MOIRAI__FS_RMDIR, path, NULL, 0);
}

int moirai_fs_scandir_timed(moirai_runtime_t *rt, uint64_t deadline, const char *path,
                            moirai_fs_dirent_t **entries, size_t *count)
{
    int rc = enter(rt, deadline);
    if (rc < 0)
        return rc;
    if (path == NULL || entries == NULL || count == NULL)
        return -EINVAL;
    moirai__fs_op_t *op = moirai__fs_op_new(MOIRAI__FS_SCANDIR, path, NULL, 0);
    if (op == NULL)
        return -ENOMEM;
    rc = moirai__fs_op_wait(rt, op, deadline);
    if (rc < 0)
        return rc;
    rc = (int)op->result;
    if (rc == 0) {
        /* Handed over: the operation no longer frees the listing. */
        *entries = op->dirents;
        *count = op->ndirents;
        op->dirents = NULL;
    }
    moirai__poolop_release(&op->base);
    return rc;
}

int moirai_fs_scandir(moirai_runtime_t *rt, const char *path, moirai_fs_dirent_t **entries,
                      size_t *count)
{
    return moirai_fs_scandir_timed(rt, MOIRAI_DEADLINE_NEVER, path, entries, count);
}

void moirai_fs_dirents_free(moirai_fs_dirent_t *entries)
{
    moirai_free(entries);
}
