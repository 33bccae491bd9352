/* Directory streams (moirai_fs_dir_*): libuv's opendir / readdir /
 * closedir, a batch of MOIRAI__FS_DIR_BATCH entries per pool round trip.
 *
 * A read the caller gave up on may still run on a pool thread with the
 * stream's DIR; the reactor thread counts such reads (`inflight`) and
 * holds a close back until they are over, so closedir never races a
 * readdir. The close operation is allocated when the stream is opened,
 * so closing cannot fail for want of memory. */
#include <errno.h>
#include <string.h>
#include <uv.h>

#include <moirai/async/fs.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>

#include "async_internal.h"
#include "fs_op.h"
#include "iowait.h"

/* The close operation owns the stream: freeing it frees both. */
static void close_op_destroy(moirai__poolop_t *base)
{
    moirai__fs_op_t *op = (moirai__fs_op_t *)base;
    moirai_free(op->dir);
    moirai_free(op);
}

int moirai_fs_dir_open_timed(moirai_runtime_t *rt, uint64_t deadline, moirai_fs_dir_t **out,
                             const char *path)
{
    if (rt == NULL || out == NULL || path == NULL)
        return -EINVAL;
    int rc = moirai__iowait_check();
    if (rc < 0)
        return rc;
    if (moirai_deadline_expired(deadline))
        return -ETIMEDOUT;
    moirai_fs_dir_t *dir = moirai_malloc(sizeof(*dir));
    if (dir == NULL)
        return -ENOMEM;
    memset(dir, 0, sizeof(*dir));
    dir->close_op = moirai__fs_op_new(MOIRAI__FS_CLOSEDIR, NULL, NULL, 0);
    if (dir->close_op == NULL) {
        moirai_free(dir);
        return -ENOMEM;
    }
    moirai__fs_op_t *op = moirai__fs_op_new(MOIRAI__FS_OPENDIR, path, NULL, 0);
    if (op == NULL) {
        moirai_free(dir->close_op);
        moirai_free(dir);
        return -ENOMEM;
    }
    rc = moirai__fs_op_wait(rt, op, deadline);
    if (rc == 0) {
        rc = (int)op->result;
        if (rc == 0) {
            dir->uvdir = op->uvdir;
            /* Handed over: the operation no longer closes it. */
            op->uvdir = NULL;
        }
        moirai__poolop_release(&op->base);
    }
    if (rc < 0) {
        /* Detached or failed: the stream was never used. */
        moirai_free(dir->close_op);
        moirai_free(dir);
        return rc;
    }
    dir->close_op->dir = dir;
    dir->close_op->base.destroy = close_op_destroy;
    /* The directory is closed even when the caller stops waiting. */
    dir->close_op->base.withdrawable = false;
    *out = dir;
    return 0;
}

int moirai_fs_dir_open(moirai_runtime_t *rt, moirai_fs_dir_t **out, const char *path)
{
    return moirai_fs_dir_open_timed(rt, MOIRAI_DEADLINE_NEVER, out, path);
}

int moirai_fs_dir_read_timed(moirai_runtime_t *rt, uint64_t deadline, moirai_fs_dir_t *dir,
                             moirai_fs_dirent_t *entry)
{
    if (rt == NULL || dir == NULL || entry == NULL)
        return -EINVAL;
    if (dir->broken)
        return -EBADFD;
    if (dir->pos < dir->count) {
        entry->name = dir->names[dir->pos];
        entry->type = dir->types[dir->pos];
        dir->pos++;
        return 1;
    }
    if (dir->eof)
        return 0;
    int rc = moirai__iowait_check();
    if (rc < 0)
        return rc;
    if (moirai_deadline_expired(deadline))
        return -ETIMEDOUT; /* nothing started: the stream stays usable */
    moirai__fs_op_t *op = moirai__fs_op_new(MOIRAI__FS_READDIR, NULL, NULL,
                                            (size_t)MOIRAI__FS_DIR_BATCH * MOIRAI__FS_NAME_SLOT);
    if (op == NULL)
        return -ENOMEM;
    op->dir = dir;
    rc = moirai__fs_op_wait(rt, op, deadline);
    if (rc < 0) {
        /* The read goes on without us and takes its entries with it. */
        dir->broken = true;
        return rc;
    }
    ssize_t n = op->result;
    if (n > 0) {
        for (ssize_t i = 0; i < n; i++) {
            memcpy(dir->names[i], op->data + (size_t)i * MOIRAI__FS_NAME_SLOT,
                   MOIRAI__FS_NAME_SLOT);
            dir->types[i] = op->types[i];
        }
    }
    moirai__poolop_release(&op->base);
    if (n < 0)
        return (int)n;
    if (n == 0) {
        dir->eof = true;
        dir->count = dir->pos = 0;
        return 0;
    }
    dir->count = (size_t)n;
    dir->pos = 1;
    entry->name = dir->names[0];
    entry->type = dir->types[0];
    return 1;
}

int moirai_fs_dir_read(moirai_runtime_t *rt, moirai_fs_dir_t *dir, moirai_fs_dirent_t *entry)
{
    return moirai_fs_dir_read_timed(rt, MOIRAI_DEADLINE_NEVER, dir, entry);
}

int moirai_fs_dir_close_timed(moirai_runtime_t *rt, uint64_t deadline, moirai_fs_dir_t *dir)
{
    if (dir == NULL)
        return 0;
    if (rt == NULL)
        return -EINVAL;
    moirai__fs_op_t *op = dir->close_op;
    /* A cancelled caller still closes: the stream must not leak, and the
     * close waits only for the directory (no cancellation check first). */
    int rc = moirai__fs_op_wait(rt, op, deadline);
    if (rc < 0)
        return rc; /* the close finishes in the background and frees `dir` */
    rc = (int)op->result;
    moirai__poolop_release(&op->base); /* frees op and dir */
    return rc;
}

int moirai_fs_dir_close(moirai_runtime_t *rt, moirai_fs_dir_t *dir)
{
    return moirai_fs_dir_close_timed(rt, MOIRAI_DEADLINE_NEVER, dir);
}
