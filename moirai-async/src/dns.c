/* Name resolution (moirai/async/dns.h): uv_getaddrinfo on the reactor
 * thread, run on libuv's thread pool, as a poolop (poolop.h) so that a
 * caller that stops waiting detaches the lookup and its callback frees
 * the answer. */
#include <errno.h>
#include <string.h>
#include <uv.h>

#include <moirai/async/dns.h>
#include <moirai/core/alloc.h>
#include <moirai/core/clock.h>

#include "async_internal.h"
#include "iowait.h"
#include "poolop.h"

typedef struct dns_op {
    moirai__poolop_t base;
    uv_getaddrinfo_t req;
    const char *node; /* copies, in `extra` */
    const char *service;
    struct addrinfo hints;
    bool has_hints;
    int result;
    struct addrinfo *res; /* owned until handed over */
    char extra[];
} dns_op_t;

/* libuv reports getaddrinfo's failures as UV_EAI_* codes (and EAI_SYSTEM
 * as the errno); the table in dns.h. */
static int map_error(int status)
{
    switch (status) {
    case UV_EAI_NONAME:
        return -ENOENT;
    case UV_EAI_AGAIN:
        return -EAGAIN;
    case UV_EAI_FAIL:
        return -EIO;
    case UV_EAI_NODATA:
        return -ENODATA;
    case UV_EAI_ADDRFAMILY:
        return -EADDRNOTAVAIL;
    case UV_EAI_FAMILY:
        return -EAFNOSUPPORT;
    case UV_EAI_SOCKTYPE:
        return -ESOCKTNOSUPPORT;
    case UV_EAI_SERVICE:
    case UV_EAI_PROTOCOL:
        return -EPROTONOSUPPORT;
    case UV_EAI_BADFLAGS:
    case UV_EAI_BADHINTS:
        return -EINVAL;
    case UV_EAI_OVERFLOW:
        return -EOVERFLOW;
    case UV_EAI_MEMORY:
        return -ENOMEM;
    case UV_EAI_CANCELED:
        return -ECANCELED;
    default:
        /* Already a negative errno (libuv's codes are errno on Linux). */
        return status < 0 ? status : -EIO;
    }
}

static void dns_destroy(moirai__poolop_t *base)
{
    dns_op_t *op = (dns_op_t *)base;
    if (op->res != NULL)
        uv_freeaddrinfo(op->res);
    moirai_free(op);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    dns_op_t *op = req->data;
    op->result = status == 0 ? 0 : map_error(status);
    op->res = status == 0 ? res : NULL;
    if (status != 0 && res != NULL)
        uv_freeaddrinfo(res);
    /* A detached lookup's answer is freed by dns_destroy. */
    moirai__poolop_complete(&op->base);
}

static void dns_start(moirai__poolop_t *base, uv_loop_t *loop)
{
    dns_op_t *op = (dns_op_t *)base;
    op->req.data = op;
    int rc = uv_getaddrinfo(loop, &op->req, on_resolved, op->node, op->service,
                            op->has_hints ? &op->hints : NULL);
    if (rc < 0) {
        op->result = map_error(rc);
        moirai__poolop_complete(&op->base);
    }
}

int moirai_dns_resolve_timed(moirai_runtime_t *rt, uint64_t deadline, const char *node,
                             const char *service, const struct addrinfo *hints,
                             struct addrinfo **res)
{
    if (rt == NULL || res == NULL || (node == NULL && service == NULL))
        return -EINVAL;
    int rc = moirai__iowait_check();
    if (rc < 0)
        return rc;
    if (moirai_deadline_expired(deadline))
        return -ETIMEDOUT; /* nothing started */
    size_t ln = node != NULL ? strlen(node) + 1 : 0;
    size_t ls = service != NULL ? strlen(service) + 1 : 0;
    dns_op_t *op = moirai_malloc(sizeof(*op) + ln + ls);
    if (op == NULL)
        return -ENOMEM;
    memset(op, 0, sizeof(*op));
    /* Copies: a detached lookup outlives the caller's strings. */
    if (node != NULL) {
        memcpy(op->extra, node, ln);
        op->node = op->extra;
    }
    if (service != NULL) {
        memcpy(op->extra + ln, service, ls);
        op->service = op->extra + ln;
    }
    if (hints != NULL) {
        /* Only the fields getaddrinfo reads from hints; the pointers of
         * the caller's structure must not be kept. */
        op->hints.ai_flags = hints->ai_flags;
        op->hints.ai_family = hints->ai_family;
        op->hints.ai_socktype = hints->ai_socktype;
        op->hints.ai_protocol = hints->ai_protocol;
        op->has_hints = true;
    }
    moirai__poolop_init(&op->base, (uv_req_t *)&op->req, dns_start, NULL, dns_destroy);
    rc = moirai__poolop_wait(rt, &op->base, deadline);
    if (rc < 0)
        return rc;
    rc = op->result;
    if (rc == 0) {
        *res = op->res;
        op->res = NULL;
    }
    moirai__poolop_release(&op->base);
    return rc;
}

int moirai_dns_resolve(moirai_runtime_t *rt, const char *node, const char *service,
                       const struct addrinfo *hints, struct addrinfo **res)
{
    return moirai_dns_resolve_timed(rt, MOIRAI_DEADLINE_NEVER, node, service, hints, res);
}

void moirai_dns_free(struct addrinfo *res)
{
    if (res != NULL)
        uv_freeaddrinfo(res);
}
