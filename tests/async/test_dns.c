/* Name resolution through the reactor and libuv's pool: loopback names
 * only (no network here), from a fiber and from a plain thread, the
 * EAI_ to errno table, a deadline and a cancellation of a lookup queued
 * behind a full pool, bad input and -ENOMEM. */
#include "async_test_util.h"
#include "io_test_util.h"
#include "oom.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <moirai/async/dns.h>
#include <moirai/async/fs.h>

/* 0 when `res` holds 127.0.0.1 port `port` (IPv4), else the line. */
static int has_loopback(const struct addrinfo *res, int port)
{
    for (const struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        if (a->ai_family != AF_INET)
            continue;
        const struct sockaddr_in *sin = (const struct sockaddr_in *)a->ai_addr;
        if (sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK) && ntohs(sin->sin_port) == port)
            return 0;
    }
    return __LINE__;
}

struct lookup {
    moirai_runtime_t *rt;
    const char *node;
    const char *service;
    int family;
    int flags;
    int port;
    int rc;
    int found;
};

static void lookup_body(struct lookup *l)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = l->family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = l->flags;
    struct addrinfo *res = NULL;
    l->rc = moirai_dns_resolve(l->rt, l->node, l->service, &hints, &res);
    l->found = l->rc == 0 ? has_loopback(res, l->port) : -1;
    moirai_dns_free(res);
}

static int lookup_fiber(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    lookup_body(arg);
    return 0;
}

Test(dns, localhost_and_numeric_from_a_fiber_and_a_thread, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(2);
    struct lookup cases[] = {
        {.node = "localhost", .service = "8080", .family = AF_INET, .port = 8080},
        {.node = "127.0.0.1", .service = "80", .family = AF_UNSPEC, .port = 80},
        {.node = "127.0.0.1", .service = NULL, .family = AF_INET, .port = 0},
        {.node = NULL, .service = "4242", .family = AF_INET, .port = 4242},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct lookup f = cases[i], t = cases[i];
        f.rt = t.rt = rt;
        /* A NULL node without AI_PASSIVE means loopback. */
        cr_assert_eq(run_fiber(rt, lookup_fiber, &f, NULL), 0);
        lookup_body(&t);
        cr_assert_eq(f.rc, 0, "case %zu: fiber rc %d", i, f.rc);
        cr_assert_eq(t.rc, 0, "case %zu: thread rc %d", i, t.rc);
        cr_assert_eq(f.found, 0, "case %zu: no 127.0.0.1:%d from the fiber", i, f.port);
        cr_assert_eq(t.found, 0, "case %zu: no 127.0.0.1:%d from the thread", i, t.port);
    }
    drop_runtime(rt);
}

Test(dns, failures_map_to_errno, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(1);
    struct addrinfo hints;
    struct addrinfo *res = (struct addrinfo *)&hints; /* must stay untouched */
    memset(&hints, 0, sizeof(hints));
    /* EAI_NONAME: not a number, and numeric only is asked (no network). */
    hints.ai_flags = AI_NUMERICHOST;
    cr_assert_eq(moirai_dns_resolve(rt, "not-an-address", NULL, &hints, &res), -ENOENT);
    /* EAI_NONAME for the service: not a number with AI_NUMERICSERV. */
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    cr_assert_eq(moirai_dns_resolve(rt, "127.0.0.1", "http", &hints, &res), -ENOENT);
    /* EAI_SERVICE: a service name the services database lacks. */
    hints.ai_flags = AI_NUMERICHOST;
    hints.ai_socktype = SOCK_STREAM;
    int rc = moirai_dns_resolve(rt, "127.0.0.1", "no-such-service-moirai", &hints, &res);
    cr_assert(rc == -EPROTONOSUPPORT || rc == -ENOENT, "rc %d", rc);
    /* EAI_FAMILY. */
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = 12345;
    cr_assert_eq(moirai_dns_resolve(rt, "127.0.0.1", NULL, &hints, &res), -EAFNOSUPPORT);
    /* EAI_SOCKTYPE. */
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = 12345;
    cr_assert_eq(moirai_dns_resolve(rt, "127.0.0.1", NULL, &hints, &res), -ESOCKTNOSUPPORT);
    /* EAI_BADFLAGS. */
    memset(&hints, 0, sizeof(hints));
    hints.ai_flags = 0x40000000;
    cr_assert_eq(moirai_dns_resolve(rt, "127.0.0.1", NULL, &hints, &res), -EINVAL);
    cr_assert_eq(res, (struct addrinfo *)&hints);
    /* Bad input. */
    cr_assert_eq(moirai_dns_resolve(NULL, "localhost", NULL, NULL, &res), -EINVAL);
    cr_assert_eq(moirai_dns_resolve(rt, "localhost", NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(moirai_dns_resolve(rt, NULL, NULL, NULL, &res), -EINVAL);
    moirai_dns_free(NULL);
    drop_runtime(rt);
}

/* A pool full of blocked FIFO opens keeps the lookup queued: the deadline
 * and a cancellation both withdraw it. */
struct fill {
    moirai_runtime_t *rt;
    const char *fifo;
    int rc;
};

static int open_fifo(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct fill *f = arg;
    f->rc = moirai_fs_open(f->rt, f->fifo, O_RDONLY, 0);
    return 0;
}

static int resolve_forever(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)cancel;
    (void)result;
    struct addrinfo *res = NULL;
    return moirai_dns_resolve(arg, "localhost", NULL, NULL, &res);
}

Test(dns, deadline_and_cancel_of_a_queued_lookup, .timeout = 60)
{
    char dir[64], fifo[128];
    scratch_make(dir, sizeof(dir), "dns");
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    fifo_make(fifo);
    moirai_runtime_t *rt = make_runtime(2);
    int pool = uv_pool_size();
    struct fill *fs = calloc((size_t)pool, sizeof(*fs));
    moirai_handle_t **hs = calloc((size_t)pool, sizeof(*hs));
    for (int i = 0; i < pool; i++) {
        fs[i] = (struct fill){.rt = rt, .fifo = fifo};
        hs[i] = spawn_with_handle(rt, open_fifo, &fs[i], NULL);
    }
    wait_threads_in_openat(pool);
    struct addrinfo *res = NULL;
    uint64_t deadline = moirai_deadline_after(20 * MOIRAI_NS_PER_MS);
    cr_assert_eq(moirai_dns_resolve_timed(rt, deadline, "localhost", NULL, NULL, &res), -ETIMEDOUT);
    cr_assert_null(res);
    /* A deadline already passed: nothing is started. */
    cr_assert_eq(moirai_dns_resolve_timed(rt, 0, "127.0.0.1", NULL, NULL, &res), -ETIMEDOUT);
    cr_assert_null(res);
    moirai_handle_t *h = spawn_with_handle(rt, resolve_forever, rt, NULL);
    moirai_fiber_sleep(20 * MOIRAI_NS_PER_MS);
    int crc = moirai_handle_cancel(h);
    cr_assert(crc == -EBUSY || crc == 0, "cancel %d", crc); /* running, or not started */
    cr_assert_eq(join_and_release(h, NULL), -ECANCELED);
    int wfd = fifo_release(fifo);
    for (int i = 0; i < pool; i++) {
        cr_assert_eq(join_and_release(hs[i], NULL), 0);
        cr_assert_geq(fs[i].rc, 0);
        close(fs[i].rc);
    }
    /* The pool works again. */
    cr_assert_eq(moirai_dns_resolve(rt, "127.0.0.1", NULL, NULL, &res), 0);
    moirai_dns_free(res);
    drop_runtime(rt);
    close(wfd);
    free(fs);
    free(hs);
    scratch_remove(dir);
}

static int oom_resolve(void *arg)
{
    struct addrinfo *res = NULL;
    int rc = moirai_dns_resolve(arg, "127.0.0.1", "80", NULL, &res);
    moirai_dns_free(res);
    return rc;
}

Test(dns, enomem_leaks_nothing, .timeout = 60)
{
    moirai_runtime_t *rt = make_runtime(1);
    moirai_test_oom_install();
    cr_assert_gt(MOIRAI_TEST_OOM_SWEEP(oom_resolve, NULL, rt), 0);
    moirai_test_oom_uninstall();
    drop_runtime(rt);
}
