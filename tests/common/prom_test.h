/* Criterion helpers shared by the tests of the metrics collectors: render
 * a writer and parse it back strictly (prom_parse.h), and sweep a
 * collector through every allocation failure, checking that each failed
 * run left the writer exactly as it was. */
#ifndef MOIRAI_TEST_PROM_TEST_H
#define MOIRAI_TEST_PROM_TEST_H

#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <moirai/core/prom.h>

#include "oom.h"
#include "prom_parse.h"

/* Renders `w` and parses the text into `d`, asserting both succeed. */
static inline void prom_test_render_parse(moirai_prom_writer_t *w, prom_doc_t *d)
{
    const char *text;
    size_t len;
    cr_assert_eq(moirai_prom_writer_render(w, &text, &len), 0);
    bool ok = prom_parse(text, len, d);
    cr_assert(ok, "%s in:\n%.*s", d->error, (int)len, text);
}

/* A copy of the rendered text (malloc'd, NUL terminated). */
static inline char *prom_test_render_copy(moirai_prom_writer_t *w)
{
    const char *text;
    size_t len;
    cr_assert_eq(moirai_prom_writer_render(w, &text, &len), 0);
    char *copy = malloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    return copy;
}

/* Runs `collect(obj, w, name)` into a fresh writer and parses the result
 * into `d`. */
static inline void prom_test_collect(moirai_metrics_collect_cb collect, void *obj, const char *name,
                                     prom_doc_t *d)
{
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    cr_assert_eq(collect(obj, w, name), 0);
    prom_test_render_parse(w, d);
    moirai_prom_writer_destroy(w);
}

typedef struct prom_test_oom {
    moirai_metrics_collect_cb collect;
    void *obj;
    moirai_prom_writer_t *w;
    char *before;
} prom_test_oom_t;

static inline int prom_test_oom_op(void *arg)
{
    prom_test_oom_t *c = arg;
    return c->collect(c->obj, c->w, "oom");
}

static inline void prom_test_oom_check(void *arg, long n)
{
    prom_test_oom_t *c = arg;
    char *now = prom_test_render_copy(c->w);
    cr_assert_str_eq(now, c->before, "allocation %ld failed and the writer changed", n);
    free(now);
}

/* Sweeps `collect(obj, ...)` through allocation failures into a writer
 * that already holds a sample: every failing run must return -ENOMEM and
 * leave the writer's text as it was; the last run succeeds. Returns the
 * number of failing runs. The object must not change meanwhile (idle). */
static inline long prom_test_oom_sweep(moirai_metrics_collect_cb collect, void *obj)
{
    prom_test_oom_t c = {collect, obj, NULL, NULL};
    cr_assert_eq(moirai_prom_writer_create(&c.w), 0);
    int f = moirai_prom_writer_family(c.w, "before", MOIRAI_PROM_GAUGE, NULL);
    cr_assert_eq(moirai_prom_writer_sample(c.w, f, NULL, 0, 1), 0);
    c.before = prom_test_render_copy(c.w);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(prom_test_oom_op, prom_test_oom_check, &c);
    moirai_test_oom_uninstall();
    prom_doc_t d;
    prom_test_render_parse(c.w, &d);
    prom_doc_free(&d);
    free(c.before);
    moirai_prom_writer_destroy(c.w);
    return failures;
}

#endif
