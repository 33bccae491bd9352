/* Files and directories through the reactor and libuv's pool: round
 * trips with exact bytes, both read paths, listings with exact names,
 * the same calls from fibers and from a plain thread, cancellation from
 * another fiber and another thread (of work running in the pool and of
 * work still queued), deadlines, bad input, and -ENOMEM at every
 * allocation with nothing leaked. */
#include "async_test_util.h"
#include "io_test_util.h"
#include "oom.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include <moirai/async/fs.h>

#define LEN 20000 /* not a multiple of the page size: a short last page */

static void fill(unsigned char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)((i * 31u + seed * 7u) ^ (i >> 8));
}

/* Everything one caller does to a file; returns 0 or the line that
 * failed, so it can run in a fiber (no Criterion assertion off the test
 * thread) and on the test thread alike. */
struct roundtrip {
    moirai_runtime_t *rt;
    char path[256];
    unsigned seed;
    /* Per caller (a fiber may move between threads: no thread-locals). */
    unsigned char out[LEN];
    unsigned char in[LEN];
};

static int roundtrip_body(struct roundtrip *r)
{
    unsigned char *out = r->out;
    unsigned char *in = r->in;
    fill(out, LEN, r->seed);
    int fd = moirai_fs_open(r->rt, r->path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    if (fd < 0)
        return __LINE__;
    if (moirai_fs_write(r->rt, fd, out, 1000, 0) != 1000)
        return __LINE__;
    /* The rest at an explicit offset (a positioned write leaves the file
     * position at 0, where the reads at -1 below start). */
    if (moirai_fs_write(r->rt, fd, out + 1000, LEN - 1000, 1000) != LEN - 1000)
        return __LINE__;
    if (moirai_fs_fsync(r->rt, fd) != 0)
        return __LINE__;
    memset(in, 0, LEN);
    if (moirai_fs_read(r->rt, fd, in, LEN, 0) != LEN)
        return __LINE__;
    if (memcmp(in, out, LEN) != 0)
        return __LINE__;
    /* A read in the middle and one past the end. */
    memset(in, 0, LEN);
    if (moirai_fs_read(r->rt, fd, in, 100, 5000) != 100 || memcmp(in, out + 5000, 100) != 0)
        return __LINE__;
    if (moirai_fs_read(r->rt, fd, in, 100, LEN) != 0)
        return __LINE__;
    if (moirai_fs_read(r->rt, fd, in, 100, LEN - 10) != 10)
        return __LINE__;
    /* Reads at the file position advance it (starts at 0). */
    if (moirai_fs_read(r->rt, fd, in, 300, -1) != 300 || memcmp(in, out, 300) != 0)
        return __LINE__;
    if (moirai_fs_read(r->rt, fd, in, 300, -1) != 300 || memcmp(in, out + 300, 300) != 0)
        return __LINE__;
    struct stat st;
    if (moirai_fs_stat(r->rt, r->path, &st) != 0 || st.st_size != LEN || !S_ISREG(st.st_mode) ||
        (st.st_mode & 0777) != 0600)
        return __LINE__;
    struct stat ref;
    if (stat(r->path, &ref) != 0 || ref.st_ino != st.st_ino || ref.st_dev != st.st_dev ||
        ref.st_mtim.tv_nsec != st.st_mtim.tv_nsec || ref.st_blocks != st.st_blocks)
        return __LINE__;
    /* (Whether the descriptor is gone afterwards cannot be checked here:
     * a concurrent caller's open may reuse its number at once.) */
    if (moirai_fs_close(r->rt, fd) != 0)
        return __LINE__;
    return 0;
}

static int roundtrip_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    *result = (void *)(intptr_t)roundtrip_body(arg);
    return 0;
}

Test(fs, round_trip_from_fibers_and_from_a_thread, .timeout = 60)
{
    char dir[64];
    scratch_make(dir, sizeof(dir), "fs");
    moirai_runtime_t *rt = make_runtime(2);
    enum { FIBERS = 8 };
    static struct roundtrip rs[FIBERS];
    moirai_handle_t *hs[FIBERS];
    for (int i = 0; i < FIBERS; i++) {
        rs[i].rt = rt;
        rs[i].seed = (unsigned)i + 1;
        snprintf(rs[i].path, sizeof(rs[i].path), "%s/f%d", dir, i);
        hs[i] = spawn_with_handle(rt, roundtrip_fiber, &rs[i], NULL);
    }
    static struct roundtrip t;
    t.rt = rt;
    t.seed = 99;
    snprintf(t.path, sizeof(t.path), "%s/thread", dir);
    int line = roundtrip_body(&t);
    cr_assert_eq(line, 0, "plain thread failed at line %d", line);
    for (int i = 0; i < FIBERS; i++) {
        void *v = NULL;
        cr_assert_eq(join_and_release(hs[i], &v), 0);
        cr_assert_eq((intptr_t)v, 0, "fiber %d failed at line %ld", i, (long)(intptr_t)v);
    }
    drop_runtime(rt);
    scratch_remove(dir);
}

/* Many fibers write disjoint records of one file through the pool at
 * once, then read them back: every byte lands exactly once, where it
 * belongs. */
#define WRITERS 64
#define RECORDS 16
#define RECORD  512

struct writer {
    moirai_runtime_t *rt;
    int fd;
    int id;
};

static int write_records(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    struct writer *w = arg;
    unsigned char rec[RECORD];
    for (int r = 0; r < RECORDS; r++) {
        memset(rec, (w->id * RECORDS + r) & 0xff, sizeof(rec));
        int64_t off = (int64_t)(r * WRITERS + w->id) * RECORD;
        if (moirai_fs_write(w->rt, w->fd, rec, RECORD, off) != RECORD) {
            *result = (void *)(intptr_t)(r + 1);
            return 0;
        }
    }
    /* Read back (page cache: the fast path) and check. */
    for (int r = 0; r < RECORDS; r++) {
        memset(rec, 0, sizeof(rec));
        int64_t off = (int64_t)(r * WRITERS + w->id) * RECORD;
        if (moirai_fs_read(w->rt, w->fd, rec, RECORD, off) != RECORD)
            *result = (void *)(intptr_t)(100 + r);
        for (int i = 0; i < RECORD; i++)
            if (rec[i] != ((w->id * RECORDS + r) & 0xff))
                *result = (void *)(intptr_t)(200 + r);
    }
    return 0;
}

Test(fs, concurrent_writers_lose_nothing, .timeout = 60)
{
    char dir[64], path[128];
    scratch_make(dir, sizeof(dir), "fs");
    snprintf(path, sizeof(path), "%s/records", dir);
    moirai_runtime_t *rt = make_runtime(2);
    int fd = moirai_fs_open(rt, path, O_CREAT | O_RDWR, 0600);
    cr_assert_geq(fd, 0);
    static struct writer ws[WRITERS];
    moirai_handle_t *hs[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        ws[i] = (struct writer){.rt = rt, .fd = fd, .id = i};
        hs[i] = spawn_with_handle(rt, write_records, &ws[i], NULL);
    }
    for (int i = 0; i < WRITERS; i++) {
        void *v = NULL;
        cr_assert_eq(join_and_release(hs[i], &v), 0);
        cr_assert_eq((intptr_t)v, 0, "writer %d: step %ld", i, (long)(intptr_t)v);
    }
    /* The whole file, checked from the test thread with plain pread. */
    struct stat st;
    cr_assert_eq(moirai_fs_stat(rt, path, &st), 0);
    cr_assert_eq(st.st_size, (off_t)WRITERS * RECORDS * RECORD);
    static unsigned char all[WRITERS * RECORDS * RECORD];
    cr_assert_eq(pread(fd, all, sizeof(all), 0), (ssize_t)sizeof(all));
    for (size_t k = 0; k < sizeof(all); k++) {
        size_t slot = k / RECORD;
        int id = (int)(slot % WRITERS), r = (int)(slot / WRITERS);
        cr_assert_eq(all[k], (id * RECORDS + r) & 0xff, "byte %zu", k);
    }
    cr_assert_eq(moirai_fs_close(rt, fd), 0);
    drop_runtime(rt);
    scratch_remove(dir);
}

/* Pages of `fd`'s first `len` bytes that are in the page cache. */
static size_t resident_pages(int fd, size_t len)
{
    void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    cr_assert_neq(map, MAP_FAILED);
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = (len + (size_t)page - 1) / (size_t)page;
    unsigned char vec[64];
    cr_assert_leq(pages, sizeof(vec));
    cr_assert_eq(mincore(map, len, vec), 0);
    size_t n = 0;
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    munmap(map, len);
    return n;
}

struct slow {
    moirai_runtime_t *rt;
    int fd;
    const unsigned char *expect;
    ssize_t got;
    int same;
};

static int slow_read(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct slow *s = arg;
    static unsigned char in[LEN];
    memset(in, 0, sizeof(in));
    s->got = moirai_fs_read(s->rt, s->fd, in, LEN, 0);
    s->same = s->got == LEN && memcmp(in, s->expect, LEN) == 0;
    return 0;
}

/* Data not in the page cache: RWF_NOWAIT says EAGAIN and the read goes
 * to the pool. mincore proves the pages were evicted before the read (a
 * fast-path read could not have answered), and that the read brought
 * them back. */
Test(fs, uncached_read_goes_through_the_pool, .timeout = 60)
{
    char dir[64], path[128];
    scratch_make(dir, sizeof(dir), "fs");
    snprintf(path, sizeof(path), "%s/cold", dir);
    static unsigned char out[LEN];
    fill(out, LEN, 5);
    int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(pwrite(fd, out, LEN, 0), LEN);
    moirai_runtime_t *rt = make_runtime(1);
    for (int round = 0; round < 2; round++) {
        cr_assert_eq(fdatasync(fd), 0);
        cr_assert_eq(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
        cr_assert_eq(resident_pages(fd, LEN), 0, "the page cache kept the file");
        struct slow s = {.rt = rt, .fd = fd, .expect = out};
        if (round == 0) {
            cr_assert_eq(run_fiber(rt, slow_read, &s, NULL), 0);
        } else {
            slow_read(&s, NULL, NULL); /* from the plain test thread */
        }
        cr_assert_eq(s.got, LEN);
        cr_assert(s.same, "the bytes read through the pool differ");
        cr_assert_gt(resident_pages(fd, LEN), 0);
    }
    drop_runtime(rt);
    close(fd);
    scratch_remove(dir);
}

/* tmpfs does not take RWF_NOWAIT (EOPNOTSUPP): reads fall back to the
 * pool and still return the exact bytes. */
Test(fs, read_on_tmpfs_falls_back_to_the_pool, .timeout = 60)
{
    char path[128];
    snprintf(path, sizeof(path), "/dev/shm/moirai-fs-%d", (int)getpid());
    int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        cr_skip_test("no /dev/shm here");
    static unsigned char out[LEN];
    fill(out, LEN, 9);
    cr_assert_eq(pwrite(fd, out, LEN, 0), LEN);
    char probe;
    struct iovec iov = {.iov_base = &probe, .iov_len = 1};
    if (preadv2(fd, &iov, 1, 0, RWF_NOWAIT) >= 0) {
        close(fd);
        unlink(path);
        cr_skip_test("/dev/shm takes RWF_NOWAIT on this kernel");
    }
    cr_assert_eq(errno, EOPNOTSUPP);
    moirai_runtime_t *rt = make_runtime(1);
    struct slow s = {.rt = rt, .fd = fd, .expect = out};
    cr_assert_eq(run_fiber(rt, slow_read, &s, NULL), 0);
    cr_assert_eq(s.got, LEN);
    cr_assert(s.same);
    drop_runtime(rt);
    close(fd);
    unlink(path);
}

static int tree_ops(moirai_runtime_t *rt, const char *dir)
{
    char a[256], b[256], sub[256], inner[256];
    snprintf(a, sizeof(a), "%s/a", dir);
    snprintf(b, sizeof(b), "%s/b", dir);
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    snprintf(inner, sizeof(inner), "%s/sub/x", dir);
    int fd = moirai_fs_open(rt, a, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0)
        return __LINE__;
    if (moirai_fs_write(rt, fd, "hello", 5, -1) != 5 || moirai_fs_close(rt, fd) != 0)
        return __LINE__;
    if (moirai_fs_open(rt, a, O_CREAT | O_EXCL | O_WRONLY, 0644) != -EEXIST)
        return __LINE__;
    if (moirai_fs_rename(rt, a, b) != 0)
        return __LINE__;
    struct stat st;
    if (moirai_fs_stat(rt, a, &st) != -ENOENT)
        return __LINE__;
    if (moirai_fs_stat(rt, b, &st) != 0 || st.st_size != 5)
        return __LINE__;
    if (moirai_fs_mkdir(rt, sub, 0755) != 0 || moirai_fs_mkdir(rt, sub, 0755) != -EEXIST)
        return __LINE__;
    if (moirai_fs_stat(rt, sub, &st) != 0 || !S_ISDIR(st.st_mode))
        return __LINE__;
    fd = moirai_fs_open(rt, inner, O_CREAT | O_WRONLY, 0600);
    if (fd < 0 || moirai_fs_close(rt, fd) != 0)
        return __LINE__;
    if (moirai_fs_rmdir(rt, sub) != -ENOTEMPTY)
        return __LINE__;
    if (moirai_fs_unlink(rt, sub) != -EISDIR)
        return __LINE__;
    if (moirai_fs_rmdir(rt, b) != -ENOTDIR)
        return __LINE__;
    if (moirai_fs_unlink(rt, inner) != 0 || moirai_fs_unlink(rt, inner) != -ENOENT)
        return __LINE__;
    if (moirai_fs_rmdir(rt, sub) != 0 || moirai_fs_rmdir(rt, sub) != -ENOENT)
        return __LINE__;
    if (moirai_fs_unlink(rt, b) != 0)
        return __LINE__;
    if (stat(b, &st) != -1 || errno != ENOENT || stat(sub, &st) != -1)
        return __LINE__;
    return 0;
}

struct tree {
    moirai_runtime_t *rt;
    const char *dir;
};

static int tree_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    struct tree *t = arg;
    *result = (void *)(intptr_t)tree_ops(t->rt, t->dir);
    return 0;
}

Test(fs, rename_unlink_mkdir_rmdir_from_a_fiber_and_a_thread, .timeout = 60)
{
    char d1[64], d2[64];
    scratch_make(d1, sizeof(d1), "fs");
    scratch_make(d2, sizeof(d2), "fs");
    moirai_runtime_t *rt = make_runtime(2);
    struct tree t = {.rt = rt, .dir = d1};
    void *v = NULL;
    cr_assert_eq(run_fiber(rt, tree_fiber, &t, &v), 0);
    cr_assert_eq((intptr_t)v, 0, "fiber failed at line %ld", (long)(intptr_t)v);
    int line = tree_ops(rt, d2);
    cr_assert_eq(line, 0, "thread failed at line %d", line);
    drop_runtime(rt);
    scratch_remove(d1);
    scratch_remove(d2);
}

/* A directory of 40 files (more than one readdir batch) and 2 subdirectories. */
#define NFILES 40

static void make_tree(const char *dir)
{
    for (int i = 0; i < NFILES; i++) {
        char p[256];
        snprintf(p, sizeof(p), "%s/file%02d", dir, i);
        int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        cr_assert_geq(fd, 0);
        close(fd);
    }
    char p[256];
    snprintf(p, sizeof(p), "%s/dirA", dir);
    cr_assert_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/dirB", dir);
    cr_assert_eq(mkdir(p, 0700), 0);
}

struct listing {
    moirai_runtime_t *rt;
    const char *dir;
    /* results: names seen by scandir and readdir, in order */
    char scan[64][16];
    int scan_types[64];
    size_t nscan;
    char stream[64][16];
    int stream_types[64];
    size_t nstream;
    int rc;
};

static int list_body(struct listing *l)
{
    moirai_fs_dirent_t *ents = NULL;
    size_t n = 0;
    l->rc = moirai_fs_scandir(l->rt, l->dir, &ents, &n);
    if (l->rc != 0)
        return l->rc;
    l->nscan = n;
    for (size_t i = 0; i < n && i < 64; i++) {
        snprintf(l->scan[i], 16, "%s", ents[i].name);
        l->scan_types[i] = ents[i].type;
    }
    moirai_fs_dirents_free(ents);
    moirai_fs_dir_t *d = NULL;
    l->rc = moirai_fs_dir_open(l->rt, &d, l->dir);
    if (l->rc != 0)
        return l->rc;
    moirai_fs_dirent_t e;
    int rc;
    while ((rc = moirai_fs_dir_read(l->rt, d, &e)) == 1) {
        if (l->nstream < 64) {
            snprintf(l->stream[l->nstream], 16, "%s", e.name);
            l->stream_types[l->nstream] = e.type;
        }
        l->nstream++;
    }
    l->rc = rc;
    /* After the end, the end again. */
    if (rc == 0 && moirai_fs_dir_read(l->rt, d, &e) != 0)
        l->rc = -1000;
    int crc = moirai_fs_dir_close(l->rt, d);
    if (l->rc == 0)
        l->rc = crc;
    return l->rc;
}

static int list_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    list_body(arg);
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void check_listing(struct listing *l)
{
    cr_assert_eq(l->rc, 0);
    cr_assert_eq(l->nscan, NFILES + 2);
    cr_assert_eq(l->nstream, NFILES + 2);
    /* scandir: sorted, exact names and types. */
    cr_assert_str_eq(l->scan[0], "dirA");
    cr_assert_str_eq(l->scan[1], "dirB");
    cr_assert_eq(l->scan_types[0], DT_DIR);
    cr_assert_eq(l->scan_types[1], DT_DIR);
    for (int i = 0; i < NFILES; i++) {
        char want[16];
        snprintf(want, sizeof(want), "file%02d", i);
        cr_assert_str_eq(l->scan[i + 2], want);
        cr_assert_eq(l->scan_types[i + 2], DT_REG);
    }
    /* readdir: the same set, each once, in the directory's order. */
    for (size_t i = 0; i < l->nstream; i++) {
        int t = l->stream_types[i];
        cr_assert(t == DT_UNKNOWN || t == (strncmp(l->stream[i], "dir", 3) == 0 ? DT_DIR : DT_REG));
    }
    qsort(l->stream, l->nstream, sizeof(l->stream[0]), cmp_name);
    for (size_t i = 0; i < l->nstream; i++)
        cr_assert_str_eq(l->stream[i], l->scan[i]);
}

Test(fs, scandir_and_readdir_list_exact_names, .timeout = 60)
{
    char dir[64];
    scratch_make(dir, sizeof(dir), "fs");
    make_tree(dir);
    moirai_runtime_t *rt = make_runtime(2);
    static struct listing fl, tl;
    fl.rt = tl.rt = rt;
    fl.dir = tl.dir = dir;
    cr_assert_eq(run_fiber(rt, list_fiber, &fl, NULL), 0);
    check_listing(&fl);
    list_body(&tl);
    check_listing(&tl);
    /* An empty directory: no entries, no allocation. */
    char empty[128];
    snprintf(empty, sizeof(empty), "%s/dirA", dir);
    moirai_fs_dirent_t *ents = (moirai_fs_dirent_t *)&ents;
    size_t n = 99;
    cr_assert_eq(moirai_fs_scandir(rt, empty, &ents, &n), 0);
    cr_assert_null(ents);
    cr_assert_eq(n, 0);
    moirai_fs_dir_t *d = NULL;
    cr_assert_eq(moirai_fs_dir_open(rt, &d, empty), 0);
    moirai_fs_dirent_t e;
    cr_assert_eq(moirai_fs_dir_read(rt, d, &e), 0);
    cr_assert_eq(moirai_fs_dir_close(rt, d), 0);
    /* Errors of the listing calls. */
    char missing[128], file[128];
    snprintf(missing, sizeof(missing), "%s/missing", dir);
    snprintf(file, sizeof(file), "%s/file00", dir);
    ents = NULL;
    cr_assert_eq(moirai_fs_scandir(rt, missing, &ents, &n), -ENOENT);
    cr_assert_eq(moirai_fs_scandir(rt, file, &ents, &n), -ENOTDIR);
    cr_assert_null(ents);
    d = NULL;
    cr_assert_eq(moirai_fs_dir_open(rt, &d, missing), -ENOENT);
    cr_assert_eq(moirai_fs_dir_open(rt, &d, file), -ENOTDIR);
    cr_assert_null(d);
    drop_runtime(rt);
    scratch_remove(dir);
}

/* Long names: the listing's block grows while it is filled. */
static void make_long_names(const char *dir, int count)
{
    for (int i = 0; i < count; i++) {
        char p[512];
        int n = snprintf(p, sizeof(p), "%s/%02d", dir, i);
        memset(p + n, 'a' + i % 26, 200);
        p[n + 200] = '\0';
        int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        cr_assert_geq(fd, 0);
        close(fd);
    }
}

Test(fs, scandir_of_long_names, .timeout = 60)
{
    char dir[64];
    scratch_make(dir, sizeof(dir), "fs");
    make_long_names(dir, 6);
    moirai_runtime_t *rt = make_runtime(1);
    moirai_fs_dirent_t *ents = NULL;
    size_t n = 0;
    cr_assert_eq(moirai_fs_scandir(rt, dir, &ents, &n), 0);
    cr_assert_eq(n, 6);
    for (size_t i = 0; i < n; i++) {
        char want[256];
        int k = snprintf(want, sizeof(want), "%02zu", i);
        memset(want + k, 'a' + (int)i % 26, 200);
        want[k + 200] = '\0';
        cr_assert_str_eq(ents[i].name, want);
        cr_assert_eq(ents[i].type, DT_REG);
    }
    moirai_fs_dirents_free(ents);
    drop_runtime(rt);
    scratch_remove(dir);
}

/* ---- cancellation and deadlines ---------------------------------------- */

struct blocked {
    moirai_runtime_t *rt;
    const char *fifo;
    moirai_event_t started;
    int rc;
    uint64_t deadline;
};

/* Opens a FIFO that has no writer: the open blocks on a pool thread. */
static int open_fifo(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct blocked *b = arg;
    moirai_event_set(&b->started);
    b->rc = moirai_fs_open_timed(b->rt, b->deadline, b->fifo, O_RDONLY, 0);
    /* -ECANCELED also as the status (a cancelled fiber's convention);
     * other results only in b->rc (a -ETIMEDOUT status would read as a
     * join that timed out). */
    return b->rc == -ECANCELED ? -ECANCELED : 0;
}

static int cancel_other(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    /* The target is running (parked in its open): -EBUSY says so. */
    return moirai_handle_cancel(arg) == -EBUSY ? 0 : -1;
}

static void cancel_blocked_open(bool from_fiber)
{
    char dir[64], fifo[128];
    scratch_make(dir, sizeof(dir), "fs");
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    fifo_make(fifo);
    int fds_before = count_fds_baseline();
    moirai_runtime_t *rt = make_runtime(2);
    struct blocked b = {.rt = rt, .fifo = fifo, .deadline = MOIRAI_DEADLINE_NEVER};
    moirai_event_init(&b.started, MOIRAI_EVENT_MANUAL, false);
    moirai_handle_t *h = spawn_with_handle(rt, open_fifo, &b, NULL);
    /* The open runs on a pool thread (uv_cancel cannot reach it). */
    wait_threads_in_openat(1);
    if (from_fiber)
        cr_assert_eq(run_fiber(rt, cancel_other, h, NULL), 0);
    else
        cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    /* The open still blocks in the pool (no writer yet), and the fiber
     * returns anyway. */
    cr_assert_eq(join_and_release(h, NULL), -ECANCELED);
    cr_assert_eq(b.rc, -ECANCELED);
    /* Now let the detached open finish: its descriptor must be closed by
     * the completion, which destroy waits for. */
    int wfd = fifo_release(fifo);
    drop_runtime(rt);
    close(wfd);
    cr_assert_eq(count_fds(), fds_before, "a descriptor leaked");
    moirai_event_destroy(&b.started);
    scratch_remove(dir);
}

Test(fs, cancel_from_another_fiber_ends_a_blocked_open, .timeout = 60)
{
    cancel_blocked_open(true);
}

Test(fs, cancel_from_another_thread_ends_a_blocked_open, .timeout = 60)
{
    cancel_blocked_open(false);
}

/* A deadline ends the wait of a fiber and of a plain thread. */
Test(fs, deadline_ends_a_blocked_open, .timeout = 60)
{
    char dir[64], fifo[128];
    scratch_make(dir, sizeof(dir), "fs");
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    fifo_make(fifo);
    int fds_before = count_fds_baseline();
    moirai_runtime_t *rt = make_runtime(2);
    struct blocked b = {.rt = rt, .fifo = fifo};
    moirai_event_init(&b.started, MOIRAI_EVENT_MANUAL, false);
    b.deadline = moirai_deadline_after(30 * MOIRAI_NS_PER_MS);
    cr_assert_eq(run_fiber(rt, open_fifo, &b, NULL), 0);
    cr_assert_eq(b.rc, -ETIMEDOUT);
    uint64_t deadline = moirai_deadline_after(30 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_fs_open_timed(rt, deadline, fifo, O_RDONLY, 0), -ETIMEDOUT);
    cr_assert_geq(moirai_clock_now_ns(), deadline);
    /* A deadline already passed fails without starting anything, even a
     * read the page cache would answer; a close still happens. */
    cr_assert_eq(moirai_fs_open_timed(rt, 0, fifo, O_RDONLY, 0), -ETIMEDOUT);
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    char byte;
    cr_assert_eq(pread(fd, &byte, 1, 0), 1);
    cr_assert_eq(moirai_fs_read_timed(rt, 0, fd, &byte, 1, 0), -ETIMEDOUT);
    struct stat st;
    cr_assert_eq(moirai_fs_stat_timed(rt, 0, "/", &st), -ETIMEDOUT);
    moirai_fs_dir_t *d = NULL;
    cr_assert_eq(moirai_fs_dir_open_timed(rt, 0, &d, "/"), -ETIMEDOUT);
    cr_assert_null(d);
    cr_assert_eq(moirai_fs_dir_open(rt, &d, "/"), 0);
    moirai_fs_dirent_t e;
    cr_assert_eq(moirai_fs_dir_read_timed(rt, 0, d, &e), -ETIMEDOUT);
    cr_assert_eq(moirai_fs_dir_read(rt, d, &e), 1); /* nothing started: still usable */
    int crc = moirai_fs_dir_close_timed(rt, 0, d);
    cr_assert(crc == 0 || crc == -ETIMEDOUT, "dir close %d", crc);
    crc = moirai_fs_close_timed(rt, 0, fd);
    cr_assert(crc == 0 || crc == -ETIMEDOUT, "close %d", crc);
    int wfd = fifo_release(fifo);
    drop_runtime(rt);
    close(wfd);
    cr_assert_eq(fcntl(fd, F_GETFD), -1, "a close past its deadline did not happen");
    cr_assert_eq(count_fds(), fds_before);
    moirai_event_destroy(&b.started);
    scratch_remove(dir);
}

/* With every pool thread blocked in a FIFO open, the next operation stays
 * queued: its deadline withdraws it (uv_cancel) and it never runs (the
 * directory it would have made does not exist afterwards, the file it
 * would have written is empty). */
Test(fs, deadline_withdraws_queued_work, .timeout = 60)
{
    char dir[64], fifo[128], newdir[128], file[128];
    scratch_make(dir, sizeof(dir), "fs");
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    snprintf(newdir, sizeof(newdir), "%s/never", dir);
    snprintf(file, sizeof(file), "%s/file", dir);
    fifo_make(fifo);
    int fds_before = count_fds_baseline();
    moirai_runtime_t *rt = make_runtime(2);
    /* A directory stream opened before the pool fills up (after, its open
     * would queue behind the blocked ones). */
    moirai_fs_dir_t *d = NULL;
    cr_assert_eq(moirai_fs_dir_open(rt, &d, dir), 0);
    int doomed = open(file, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    cr_assert_geq(doomed, 0);
    int pool = uv_pool_size();
    struct blocked *bs = calloc((size_t)pool, sizeof(*bs));
    moirai_handle_t **hs = calloc((size_t)pool, sizeof(*hs));
    for (int i = 0; i < pool; i++) {
        bs[i] = (struct blocked){.rt = rt, .fifo = fifo, .deadline = MOIRAI_DEADLINE_NEVER};
        moirai_event_init(&bs[i].started, MOIRAI_EVENT_MANUAL, false);
        hs[i] = spawn_with_handle(rt, open_fifo, &bs[i], NULL);
    }
    wait_threads_in_openat(pool);
    uint64_t deadline = moirai_deadline_after(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_fs_mkdir_timed(rt, deadline, newdir, 0700), -ETIMEDOUT);
    /* A withdrawn read of the stream: its position is lost. */
    moirai_fs_dirent_t e;
    deadline = moirai_deadline_after(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_fs_dir_read_timed(rt, deadline, d, &e), -ETIMEDOUT);
    cr_assert_eq(moirai_fs_dir_read(rt, d, &e), -EBADFD);
    /* Closes are never withdrawn: they happen once the pool frees up. */
    deadline = moirai_deadline_after(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_fs_dir_close_timed(rt, deadline, d), -ETIMEDOUT);
    deadline = moirai_deadline_after(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_fs_close_timed(rt, deadline, doomed), -ETIMEDOUT);
    cr_assert_eq(fcntl(doomed, F_GETFD) >= 0, 1, "closed while the pool was full");
    int fd = open(file, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0);
    deadline = moirai_deadline_after(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_fs_write_timed(rt, deadline, fd, "data", 4, 0), -ETIMEDOUT);
    /* Release the blocked opens: each fiber gets its descriptor. */
    int wfd = fifo_release(fifo);
    for (int i = 0; i < pool; i++) {
        cr_assert_eq(join_and_release(hs[i], NULL), 0);
        cr_assert_geq(bs[i].rc, 0);
        cr_assert_eq(moirai_fs_close(rt, bs[i].rc), 0);
        moirai_event_destroy(&bs[i].started);
    }
    drop_runtime(rt);
    close(wfd);
    cr_assert_eq(fcntl(doomed, F_GETFD), -1, "a timed-out close was withdrawn");
    struct stat st;
    cr_assert_eq(stat(newdir, &st), -1, "a withdrawn mkdir ran");
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq(st.st_size, 0, "a withdrawn write ran");
    close(fd);
    cr_assert_eq(count_fds(), fds_before);
    free(bs);
    free(hs);
    scratch_remove(dir);
}

/* A slow-path read that is cancelled never writes the caller's buffer,
 * even when the data arrives later: the read of a FIFO blocks in the
 * pool (RWF_NOWAIT says EAGAIN), the caller gives up and then the data
 * is written. */
Test(fs, abandoned_read_never_touches_the_buffer, .timeout = 60)
{
    char dir[64], fifo[128];
    scratch_make(dir, sizeof(dir), "fs");
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    fifo_make(fifo);
    int wfd = fifo_release(fifo);
    int rfd = open(fifo, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(rfd, 0);
    moirai_runtime_t *rt = make_runtime(1);
    unsigned char *buf = malloc(64);
    memset(buf, 0xAA, 64);
    uint64_t deadline = moirai_deadline_after(30 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_fs_read_timed(rt, deadline, rfd, buf, 64, -1), -ETIMEDOUT);
    /* Freed now: ASan would report a late write into it. */
    free(buf);
    cr_assert_eq(write(wfd, "late", 4), 4);
    drop_runtime(rt); /* waits for the detached read, which takes "late" */
    close(rfd);
    close(wfd);
    scratch_remove(dir);
}

/* ---- bad input ---------------------------------------------------------- */

struct selfc {
    moirai_runtime_t *rt;
    moirai_event_t started;
    int fd; /* closed by the cancelled fiber all the same */
    int close_rc;
};

static int self_cancelled(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct selfc *sc = arg;
    moirai_runtime_t *rt = sc->rt;
    moirai_event_set(&sc->started);
    /* Wait until the handle's cancellation is visible to this fiber. */
    while (moirai_fiber_sleep(MOIRAI_NS_PER_MS) != -ECANCELED)
        ;
    struct stat st;
    char buf[4];
    moirai_fs_dirent_t *ents = NULL;
    size_t n = 0;
    moirai_fs_dir_t *d = NULL;
    if (moirai_fs_open(rt, "/", O_RDONLY, 0) != -ECANCELED ||
        moirai_fs_stat(rt, "/", &st) != -ECANCELED ||
        moirai_fs_read(rt, 0, buf, sizeof(buf), 0) != -ECANCELED ||
        moirai_fs_write(rt, 1, buf, 0, 0) != -ECANCELED ||
        moirai_fs_scandir(rt, "/", &ents, &n) != -ECANCELED ||
        moirai_fs_dir_open(rt, &d, "/") != -ECANCELED || moirai_fs_mkdir(rt, "/x", 0) != -ECANCELED)
        return -1;
    sc->close_rc = moirai_fs_close(rt, sc->fd);
    return 0;
}

Test(fs, a_cancelled_fiber_fails_at_once, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(1);
    struct selfc sc = {.rt = rt, .fd = open("/", O_RDONLY | O_CLOEXEC), .close_rc = 1};
    cr_assert_geq(sc.fd, 0);
    moirai_event_init(&sc.started, MOIRAI_EVENT_MANUAL, false);
    moirai_handle_t *h = spawn_with_handle(rt, self_cancelled, &sc, NULL);
    moirai_event_wait(&sc.started);
    cr_assert_eq(moirai_handle_cancel(h), -EBUSY);
    /* 0: every call failed with -ECANCELED. */
    cr_assert_eq(join_and_release(h, NULL), 0);
    /* The close started anyway: waited for (0) or not (-ECANCELED). */
    cr_assert(sc.close_rc == 0 || sc.close_rc == -ECANCELED, "close %d", sc.close_rc);
    moirai_event_destroy(&sc.started);
    drop_runtime(rt); /* waits for a close still in the pool */
    cr_assert_eq(fcntl(sc.fd, F_GETFD), -1, "the cancelled fiber's close did not happen");
}

Test(fs, bad_input_gets_an_errno, .timeout = 60)
{
    char dir[64], path[128];
    scratch_make(dir, sizeof(dir), "fs");
    snprintf(path, sizeof(path), "%s/f", dir);
    moirai_runtime_t *rt = make_runtime(1);
    char buf[16] = {0};
    struct stat st;
    moirai_fs_dirent_t *ents = NULL;
    size_t n = 0;
    moirai_fs_dir_t *d = NULL;
    moirai_fs_dirent_t e;
    /* NULL runtime. */
    cr_assert_eq(moirai_fs_open(NULL, path, O_RDONLY, 0), -EINVAL);
    cr_assert_eq(moirai_fs_read(NULL, 0, buf, 1, 0), -EINVAL);
    cr_assert_eq(moirai_fs_write(NULL, 1, buf, 1, 0), -EINVAL);
    cr_assert_eq(moirai_fs_close(NULL, 0), -EINVAL);
    cr_assert_eq(moirai_fs_fsync(NULL, 0), -EINVAL);
    cr_assert_eq(moirai_fs_stat(NULL, path, &st), -EINVAL);
    cr_assert_eq(moirai_fs_rename(NULL, path, path), -EINVAL);
    cr_assert_eq(moirai_fs_unlink(NULL, path), -EINVAL);
    cr_assert_eq(moirai_fs_mkdir(NULL, path, 0700), -EINVAL);
    cr_assert_eq(moirai_fs_rmdir(NULL, path), -EINVAL);
    cr_assert_eq(moirai_fs_scandir(NULL, dir, &ents, &n), -EINVAL);
    cr_assert_eq(moirai_fs_dir_open(NULL, &d, dir), -EINVAL);
    cr_assert_eq(moirai_fs_dir_read(NULL, d, &e), -EINVAL);
    /* NULL paths, buffers and outputs. */
    cr_assert_eq(moirai_fs_open(rt, NULL, O_RDONLY, 0), -EINVAL);
    cr_assert_eq(moirai_fs_read(rt, 0, NULL, 1, 0), -EINVAL);
    cr_assert_eq(moirai_fs_write(rt, 1, NULL, 1, 0), -EINVAL);
    cr_assert_eq(moirai_fs_stat(rt, NULL, &st), -EINVAL);
    cr_assert_eq(moirai_fs_stat(rt, path, NULL), -EINVAL);
    cr_assert_eq(moirai_fs_rename(rt, NULL, path), -EINVAL);
    cr_assert_eq(moirai_fs_rename(rt, path, NULL), -EINVAL);
    cr_assert_eq(moirai_fs_unlink(rt, NULL), -EINVAL);
    cr_assert_eq(moirai_fs_mkdir(rt, NULL, 0700), -EINVAL);
    cr_assert_eq(moirai_fs_rmdir(rt, NULL), -EINVAL);
    cr_assert_eq(moirai_fs_scandir(rt, NULL, &ents, &n), -EINVAL);
    cr_assert_eq(moirai_fs_scandir(rt, dir, NULL, &n), -EINVAL);
    cr_assert_eq(moirai_fs_scandir(rt, dir, &ents, NULL), -EINVAL);
    cr_assert_eq(moirai_fs_dir_open(rt, NULL, dir), -EINVAL);
    cr_assert_eq(moirai_fs_dir_open(rt, &d, NULL), -EINVAL);
    cr_assert_eq(moirai_fs_dir_read(rt, NULL, &e), -EINVAL);
    cr_assert_eq(moirai_fs_dir_close(rt, NULL), 0);
    moirai_fs_dirents_free(NULL);
    /* Lengths and offsets. */
    int fd = moirai_fs_open(rt, path, O_CREAT | O_RDWR, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(moirai_fs_read(rt, fd, buf, (size_t)SSIZE_MAX + 1, 0), -EINVAL);
    cr_assert_eq(moirai_fs_write(rt, fd, buf, (size_t)SSIZE_MAX + 1, 0), -EINVAL);
    cr_assert_eq(moirai_fs_read(rt, fd, buf, 1, -2), -EINVAL);
    cr_assert_eq(moirai_fs_write(rt, fd, buf, 1, -2), -EINVAL);
    cr_assert_eq(moirai_fs_read(rt, fd, buf, 0, 0), 0);
    cr_assert_eq(moirai_fs_write(rt, fd, buf, 0, 0), 0);
    /* Descriptors: negative, closed, wrong direction, a directory. */
    cr_assert_eq(moirai_fs_read(rt, -1, buf, 1, 0), -EBADF);
    cr_assert_eq(moirai_fs_write(rt, -1, buf, 1, 0), -EBADF);
    cr_assert_eq(moirai_fs_close(rt, -1), -EBADF);
    cr_assert_eq(moirai_fs_fsync(rt, -1), -EBADF);
    int closed = dup(fd);
    cr_assert_geq(closed, 0);
    close(closed);
    cr_assert_eq(moirai_fs_read(rt, closed, buf, 1, 0), -EBADF);
    cr_assert_eq(moirai_fs_write(rt, closed, buf, 1, 0), -EBADF);
    cr_assert_eq(moirai_fs_fsync(rt, closed), -EBADF);
    cr_assert_eq(moirai_fs_close(rt, closed), -EBADF);
    int ro = moirai_fs_open(rt, path, O_RDONLY, 0);
    cr_assert_geq(ro, 0);
    cr_assert_eq(moirai_fs_write(rt, ro, buf, 1, 0), -EBADF);
    cr_assert_eq(moirai_fs_close(rt, ro), 0);
    int wo = moirai_fs_open(rt, path, O_WRONLY, 0);
    cr_assert_geq(wo, 0);
    cr_assert_eq(moirai_fs_read(rt, wo, buf, 1, 0), -EBADF);
    cr_assert_eq(moirai_fs_close(rt, wo), 0);
    int dfd = moirai_fs_open(rt, dir, O_RDONLY | O_DIRECTORY, 0);
    cr_assert_geq(dfd, 0);
    cr_assert_eq(moirai_fs_read(rt, dfd, buf, 1, 0), -EISDIR);
    cr_assert_eq(moirai_fs_close(rt, dfd), 0);
    /* Paths. */
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/no/such", dir);
    cr_assert_eq(moirai_fs_open(rt, missing, O_RDONLY, 0), -ENOENT);
    cr_assert_eq(moirai_fs_open(rt, dir, O_WRONLY, 0), -EISDIR);
    cr_assert_eq(moirai_fs_stat(rt, missing, &st), -ENOENT);
    cr_assert_eq(moirai_fs_rename(rt, missing, path), -ENOENT);
    cr_assert_eq(moirai_fs_mkdir(rt, missing, 0700), -ENOENT);
    cr_assert_eq(moirai_fs_close(rt, fd), 0);
    drop_runtime(rt);
    scratch_remove(dir);
}

/* ---- out of memory ------------------------------------------------------ */

struct oom_ctx {
    moirai_runtime_t *rt;
    char dir[64];
    char path[128];
    char path2[128];
    char longdir[128];
    int fds;
};

static int oom_open_write_read(void *arg)
{
    struct oom_ctx *c = arg;
    int fd = moirai_fs_open(c->rt, c->path, O_CREAT | O_RDWR, 0600);
    if (fd < 0)
        return fd;
    ssize_t w = moirai_fs_write(c->rt, fd, "abcdef", 6, 0);
    if (w != 6) {
        close(fd);
        return w < 0 ? (int)w : -EIO;
    }
    /* A FIFO-free way to force the pool read: evict the page first. */
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    char in[6];
    ssize_t r = moirai_fs_read(c->rt, fd, in, 6, 0);
    close(fd);
    if (r < 0)
        return (int)r;
    return r == 6 && memcmp(in, "abcdef", 6) == 0 ? 0 : -EIO;
}

static int oom_stat_rename(void *arg)
{
    struct oom_ctx *c = arg;
    struct stat st;
    int rc = moirai_fs_stat(c->rt, c->path, &st);
    if (rc < 0)
        return rc;
    rc = moirai_fs_rename(c->rt, c->path, c->path2);
    if (rc < 0)
        return rc;
    /* Put it back with plain rename so every run starts the same. */
    return rename(c->path2, c->path) == 0 ? 0 : -EIO;
}

static int oom_listing(void *arg)
{
    struct oom_ctx *c = arg;
    moirai_fs_dirent_t *ents = NULL;
    size_t n = 0;
    int rc = moirai_fs_scandir(c->rt, c->dir, &ents, &n);
    if (rc < 0)
        return rc;
    moirai_fs_dirents_free(ents);
    if (n != 2)
        return -EIO;
    moirai_fs_dir_t *d = NULL;
    rc = moirai_fs_dir_open(c->rt, &d, c->dir);
    if (rc < 0)
        return rc;
    moirai_fs_dirent_t e;
    rc = moirai_fs_dir_read(c->rt, d, &e);
    int crc = moirai_fs_dir_close(c->rt, d);
    if (rc < 0)
        return rc;
    return rc == 1 && crc == 0 ? 0 : -EIO;
}

static int oom_long_listing(void *arg)
{
    struct oom_ctx *c = arg;
    moirai_fs_dirent_t *ents = NULL;
    size_t n = 0;
    int rc = moirai_fs_scandir(c->rt, c->longdir, &ents, &n);
    moirai_fs_dirents_free(ents);
    return rc == 0 && n != 6 ? -EIO : rc;
}

static void no_fd_left(void *arg, long n)
{
    (void)n;
    struct oom_ctx *c = arg;
    cr_assert_eq(count_fds(), c->fds, "a failed run left a descriptor open");
}

Test(fs, enomem_at_every_allocation_leaks_nothing, .timeout = 120)
{
    static struct oom_ctx c;
    scratch_make(c.dir, sizeof(c.dir), "fs");
    snprintf(c.path, sizeof(c.path), "%s/f", c.dir);
    snprintf(c.path2, sizeof(c.path2), "%s/g", c.dir);
    snprintf(c.longdir, sizeof(c.longdir), "%s/long", c.dir);
    cr_assert_eq(mkdir(c.longdir, 0700), 0);
    make_long_names(c.longdir, 6);
    (void)count_fds_baseline(); /* libuv's process-wide pipe, made once */
    c.rt = make_runtime(1);
    c.fds = count_fds();
    moirai_test_oom_install();
    cr_assert_gt(MOIRAI_TEST_OOM_SWEEP(oom_open_write_read, no_fd_left, &c), 0);
    cr_assert_gt(MOIRAI_TEST_OOM_SWEEP(oom_stat_rename, no_fd_left, &c), 0);
    cr_assert_gt(MOIRAI_TEST_OOM_SWEEP(oom_listing, no_fd_left, &c), 0);
    /* The operation, the listing and at least one growth of it. */
    long grown = MOIRAI_TEST_OOM_SWEEP(oom_long_listing, no_fd_left, &c);
    cr_assert_geq(grown, 3, "only %ld allocations", grown);
    moirai_test_oom_uninstall();
    /* moirai_fs_close allocates its operation: on -ENOMEM the descriptor
     * stays open. */
    int fd = open(c.path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0);
    moirai_test_oom_install();
    moirai_test_oom_fail_at(0);
    int rc = moirai_fs_close(c.rt, fd);
    moirai_test_oom_fail_at(-1);
    moirai_test_oom_uninstall();
    cr_assert_eq(rc, -ENOMEM);
    cr_assert_eq(fcntl(fd, F_GETFD) >= 0, 1, "close -ENOMEM closed the descriptor");
    cr_assert_eq(moirai_fs_close(c.rt, fd), 0);
    drop_runtime(c.rt);
    scratch_remove(c.dir);
}
