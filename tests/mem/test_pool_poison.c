/* Checked builds: AddressSanitizer reports a use after release (and a
 * touch of memory the pool never handed out), and a double release is
 * logged and aborts.
 *
 * The offending code runs in a forked child whose sanitizer reports go to
 * a private directory (set with __sanitizer_set_report_path) and whose
 * stderr is captured, so the test wrapper, which fails any test that
 * leaves a sanitizer report behind, sees nothing; this test checks the
 * child's exit and report instead. Expectations that need a check the
 * build lacks are skipped with the reason. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include <moirai/mem/pool.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#include <sanitizer/common_interface_defs.h>
#else
#define HAVE_ASAN 0
#endif

typedef struct child_result {
    int status;       /* from waitpid */
    char text[16384]; /* the child's stderr and sanitizer reports */
} child_result_t;

static void append_file(child_result_t *r, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t len = strlen(r->text);
    size_t n = fread(r->text + len, 1, sizeof(r->text) - 1 - len, f);
    r->text[len + n] = '\0';
    fclose(f);
}

/* Runs fn(arg) in a child process; returns how it ended and what it said. */
static void run_child(void (*fn)(void *), void *arg, child_result_t *r)
{
    char dir[] = "/tmp/moirai-poison.XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char err_path[64], report_path[64];
    snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
    snprintf(report_path, sizeof(report_path), "%s/report", dir);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
#if HAVE_ASAN
        __sanitizer_set_report_path(report_path);
#endif
        fn(arg);
        _exit(0); /* nothing was caught */
    }
    cr_assert_eq(waitpid(pid, &r->status, 0), pid);
    r->text[0] = '\0';
    append_file(r, err_path);
    unlink(err_path);
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "report", 6) != 0)
            continue;
        char path[384];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        append_file(r, path);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static moirai_pool_t *make_pool(size_t size, size_t align)
{
    moirai_pool_config_t cfg;
    moirai_pool_config_init(&cfg, size);
    cfg.alignment = align;
    moirai_pool_t *pool;
    if (moirai_pool_create(&pool, &cfg) != 0)
        abort();
    return pool;
}

/* The child bodies. Each does something the checks must catch; volatile
 * accesses keep the compiler from removing them. */

static void use_after_release(void *arg)
{
    (void)arg;
    moirai_pool_t *pool = make_pool(64, 0);
    void *obj;
    moirai_pool_alloc(pool, &obj);
    memset(obj, 1, 64);
    moirai_pool_free(pool, obj);
    ((volatile char *)obj)[10] = 2;
}

static void read_after_release_other_thread_cache(void *arg)
{
    (void)arg;
    moirai_pool_t *pool = make_pool(32, 0);
    void *a, *b;
    moirai_pool_alloc(pool, &a);
    moirai_pool_alloc(pool, &b);
    moirai_pool_free(pool, a);
    moirai_pool_flush(pool); /* a now sits in the depot */
    volatile char c = ((volatile char *)a)[0];
    (void)c;
}

static void overflow_into_padding(void *arg)
{
    (void)arg;
    /* 20-byte objects 32 bytes apart: bytes 20..31 are not the caller's. */
    moirai_pool_t *pool = make_pool(20, 32);
    void *obj;
    moirai_pool_alloc(pool, &obj);
    ((volatile char *)obj)[19] = 1; /* fine */
    ((volatile char *)obj)[24] = 1; /* not */
}

static void touch_never_allocated(void *arg)
{
    (void)arg;
    moirai_pool_t *pool = make_pool(64, 64);
    void *obj;
    moirai_pool_alloc(pool, &obj);
    ((volatile char *)obj)[64] = 1; /* the next object, still in the chunk */
}

static void double_release(void *arg)
{
    (void)arg;
    moirai_pool_t *pool = make_pool(48, 0);
    void *obj, *other;
    moirai_pool_alloc(pool, &obj);
    moirai_pool_alloc(pool, &other);
    moirai_pool_free(pool, obj);
    moirai_pool_free(pool, other);
    moirai_pool_free(pool, obj);
}

static void clean_use(void *arg)
{
    (void)arg;
    moirai_pool_t *pool = make_pool(64, 0);
    void *objs[300];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 300; i++) {
            moirai_pool_alloc(pool, &objs[i]);
            memset(objs[i], round, 64);
        }
        for (int i = 0; i < 300; i++)
            moirai_pool_free(pool, objs[i]);
    }
    moirai_pool_destroy(pool);
}

static void expect_asan_report(void (*fn)(void *), const char *what)
{
    if (!HAVE_ASAN)
        cr_skip("needs an AddressSanitizer build (released objects are poisoned only there)");
    child_result_t *r = malloc(sizeof(*r));
    cr_assert_not_null(r);
    run_child(fn, NULL, r);
    cr_assert(!(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0),
              "%s was not caught; child said:\n%s", what, r->text);
    cr_assert_not_null(strstr(r->text, "use-after-poison"),
                       "%s: expected a use-after-poison report, got:\n%s", what, r->text);
    free(r);
}

Test(pool_poison, clean_use_reports_nothing, .timeout = 60)
{
    child_result_t *r = malloc(sizeof(*r));
    cr_assert_not_null(r);
    run_child(clean_use, NULL, r);
    cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "child said:\n%s", r->text);
    cr_assert_eq(r->text[0], '\0', "unexpected output:\n%s", r->text);
    free(r);
}

Test(pool_poison, use_after_release_is_reported, .timeout = 60)
{
    expect_asan_report(use_after_release, "a write after release");
}

Test(pool_poison, read_of_object_in_depot_is_reported, .timeout = 60)
{
    expect_asan_report(read_after_release_other_thread_cache, "a read of a flushed object");
}

Test(pool_poison, overflow_into_padding_is_reported, .timeout = 60)
{
    expect_asan_report(overflow_into_padding, "a write past the object size");
}

Test(pool_poison, never_allocated_memory_is_reported, .timeout = 60)
{
    expect_asan_report(touch_never_allocated, "a write into an object never handed out");
}

Test(pool_poison, double_release_aborts, .timeout = 60)
{
    if (!(moirai_pool_checks() & MOIRAI_POOL_CHECK_DOUBLE_RELEASE))
        cr_skip("this build of moirai-mem does not check releases (optimised, no "
                "AddressSanitizer; see moirai_pool_checks())");
    child_result_t *r = malloc(sizeof(*r));
    cr_assert_not_null(r);
    run_child(double_release, NULL, r);
    cr_assert(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT,
              "a double release must abort; child status %#x said:\n%s", r->status, r->text);
    cr_assert_not_null(strstr(r->text, "released twice"), "child said:\n%s", r->text);
    free(r);
}
