/* A file operation on libuv's thread pool (internal; fs.c and fs_dir.c).
 *
 * One allocation holds the operation, its copied paths and, for reads and
 * writes, its data buffer, so that a detached operation (see poolop.h)
 * never touches the caller's memory. */
#ifndef MOIRAI_ASYNC_FS_OP_H
#define MOIRAI_ASYNC_FS_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include <moirai/async/fs.h>

#include "poolop.h"

/* Entries a directory stream fetches per pool round trip. */
#define MOIRAI__FS_DIR_BATCH 32

typedef enum moirai__fs_kind {
    MOIRAI__FS_OPEN,
    MOIRAI__FS_READ,
    MOIRAI__FS_WRITE,
    MOIRAI__FS_CLOSE,
    MOIRAI__FS_FSYNC,
    MOIRAI__FS_STAT,
    MOIRAI__FS_RENAME,
    MOIRAI__FS_UNLINK,
    MOIRAI__FS_MKDIR,
    MOIRAI__FS_RMDIR,
    MOIRAI__FS_SCANDIR,
    MOIRAI__FS_OPENDIR,
    MOIRAI__FS_READDIR,
    MOIRAI__FS_CLOSEDIR,
} moirai__fs_kind_t;

typedef struct moirai__fs_op moirai__fs_op_t;

struct moirai__fs_op {
    moirai__poolop_t base;
    uv_fs_t req;
    uv_loop_t *loop; /* set by start (reactor thread) */
    moirai__fs_kind_t kind;
    /* Arguments. */
    int fd;
    int flags;
    int mode;
    int64_t offset;
    size_t len;
    char *data; /* the operation's own buffer (reads, writes) */
    const char *path;
    const char *path2;
    struct moirai_fs_dir *dir; /* readdir, closedir */
    /* Results, written on the reactor thread before completion. */
    ssize_t result;
    uv_stat_t stat;
    moirai_fs_dirent_t *dirents; /* scandir; owned until handed over */
    size_t ndirents;
    uv_dir_t *uvdir;                         /* opendir */
    uv_dirent_t batch[MOIRAI__FS_DIR_BATCH]; /* readdir: names by libuv */
    int types[MOIRAI__FS_DIR_BATCH];         /* readdir: copied names in `data` */
    char extra[];                            /* paths, then the data buffer */
};

/* Allocates an operation of `kind` with room for copies of `path` and
 * `path2` (either may be NULL) and `data_len` data bytes. NULL: no
 * memory. */
moirai__fs_op_t *moirai__fs_op_new(moirai__fs_kind_t kind, const char *path, const char *path2,
                                   size_t data_len);

/* Runs `op` and waits (see moirai__poolop_wait). */
int moirai__fs_op_wait(moirai_runtime_t *rt, moirai__fs_op_t *op, uint64_t deadline);

/* The directory stream; fields after `pos` are the reactor thread's. */
struct moirai_fs_dir {
    uv_dir_t *uvdir;
    /* The current batch, copied from the last readdir. */
    char names[MOIRAI__FS_DIR_BATCH][256];
    int types[MOIRAI__FS_DIR_BATCH];
    size_t count;
    size_t pos;
    bool eof;
    bool broken; /* a read was interrupted: only close is left */
    /* Reactor thread: pool requests on uvdir in flight, and a close
     * waiting for them to end. */
    int inflight;
    moirai__fs_op_t *deferred_close;
    moirai__fs_op_t *close_op; /* allocated at open: closing cannot fail */
};

/* Bytes of one copied name in a readdir batch (NAME_MAX and its NUL). */
#define MOIRAI__FS_NAME_SLOT 256

/* Reactor thread: issues the closedir of `op` (its stream is idle). */
void moirai__fs_dir_start_close(moirai__fs_op_t *op);

#endif
