/* moirai-bench, suite "async": the peers of file_read_4k (see io_peers.h).
 *
 * "libuv": uv_fs_read with a callback, IO_FILE_READERS requests in flight
 * at any time, each reissued from its own callback with a new random
 * block until `iters` reads completed. The reads run on libuv's thread
 * pool (its default size, 4 threads; it is process-wide and created on
 * first use, so its start is not in a measured round after the first);
 * the callbacks run on a loop of the calling thread.
 *
 * "pread": 2 threads, each making half of the reads with plain pread(2),
 * one after another.
 *
 * Every read is checked: the block must hold its own number (see
 * io_file_fd). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "../bench.h"
#include "io_peers.h"

typedef struct uv_reader {
    uv_fs_t req;
    uint64_t rng;
    uint64_t block;
    unsigned char buf[IO_FILE_BLOCK];
} uv_reader_t;

typedef struct uv_fs_run {
    uv_loop_t loop;
    int fd;
    uint64_t issued, completed, iters;
    int error;
} uv_fs_run_t;

static void read_done(uv_fs_t *req);

static int issue(uv_fs_run_t *r, uv_reader_t *rd)
{
    rd->block = io_rand_next(&rd->rng) % IO_FILE_BLOCKS;
    uv_buf_t b = uv_buf_init((char *)rd->buf, IO_FILE_BLOCK);
    r->issued++;
    return uv_fs_read(&r->loop, &rd->req, r->fd, &b, 1, (int64_t)(rd->block * IO_FILE_BLOCK),
                      read_done);
}

static void read_done(uv_fs_t *req)
{
    uv_reader_t *rd = (uv_reader_t *)req;
    uv_fs_run_t *r = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    r->completed++;
    if (n != IO_FILE_BLOCK || !io_file_block_ok(rd->buf, rd->block)) {
        if (!r->error) {
            r->error = n < 0 ? (int)n : -EIO;
            fprintf(stderr, "async/file_read_4k: libuv: read of block %llu: %s\n",
                    (unsigned long long)rd->block, n < 0 ? uv_strerror((int)n) : "wrong data");
        }
        return;
    }
    if (r->error || r->issued >= r->iters)
        return;
    req->data = r;
    int err = issue(r, rd);
    if (err < 0 && !r->error)
        r->error = err;
}

double io_uv_file_read(uint64_t iters)
{
    int fd = io_file_fd();
    if (fd < 0)
        return -1.0;
    uv_fs_run_t r = {.fd = fd, .iters = iters ? iters : 1};
    uv_reader_t *rd = calloc(IO_FILE_READERS, sizeof(*rd));
    if (!rd || uv_loop_init(&r.loop) != 0) {
        free(rd);
        return -1.0;
    }
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < IO_FILE_READERS && r.issued < r.iters; i++) {
        rd[i].rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
        rd[i].req.data = &r;
        if (issue(&r, &rd[i]) < 0) {
            r.error = -EIO;
            r.issued--;
            break;
        }
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uint64_t t1 = bench_now_ns();
    int closed = uv_loop_close(&r.loop);
    free(rd);
    if (r.error || closed != 0 || r.completed != r.iters)
        return -1.0;
    return io_per_op(t0, t1, r.iters);
}

typedef struct pread_arg {
    int fd;
    uint64_t reads;
    uint64_t rng;
    int ok;
} pread_arg_t;

static void *pread_thread(void *p)
{
    pread_arg_t *a = p;
    unsigned char buf[IO_FILE_BLOCK];
    a->ok = 1;
    for (uint64_t i = 0; i < a->reads; i++) {
        uint64_t block = io_rand_next(&a->rng) % IO_FILE_BLOCKS;
        ssize_t n = pread(a->fd, buf, IO_FILE_BLOCK, (off_t)(block * IO_FILE_BLOCK));
        if (n != IO_FILE_BLOCK || !io_file_block_ok(buf, block)) {
            a->ok = 0;
            break;
        }
    }
    return NULL;
}

double io_pread_file_read(uint64_t iters)
{
    int fd = io_file_fd();
    if (fd < 0)
        return -1.0;
    uint64_t total = iters < 2 ? 2 : iters;
    pread_arg_t a[2] = {{fd, total / 2, 0x9e3779b97f4a7c15ULL, 0},
                        {fd, total - total / 2, 0xbf58476d1ce4e5b9ULL, 0}};
    pthread_t th;
    uint64_t t0 = bench_now_ns();
    if (pthread_create(&th, NULL, pread_thread, &a[1]) != 0)
        return -1.0;
    pread_thread(&a[0]);
    pthread_join(th, NULL);
    uint64_t t1 = bench_now_ns();
    if (!a[0].ok || !a[1].ok) {
        fprintf(stderr, "async/file_read_4k: pread: a read failed or returned wrong data\n");
        return -1.0;
    }
    return io_per_op(t0, t1, total);
}
