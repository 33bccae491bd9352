/* The Prometheus text format writer and the metrics registry: output
 * parsed back by a strict parser (tests/common/prom_parse.h), escaping,
 * name validation, marks, and every error path (-ENOMEM through the
 * failing allocator). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include <moirai/core/prom.h>

#include "oom.h"
#include "prom_parse.h"

/* Renders `w` and parses the text into `d`, asserting both succeed. */
static void render_parse(moirai_prom_writer_t *w, prom_doc_t *d)
{
    const char *text;
    size_t len;
    cr_assert_eq(moirai_prom_writer_render(w, &text, &len), 0);
    bool ok = prom_parse(text, len, d);
    cr_assert(ok, "%s in:\n%.*s", d->error, (int)len, text);
}

/* A copy of the rendered text (malloc'd, NUL terminated). */
static char *render_copy(moirai_prom_writer_t *w)
{
    const char *text;
    size_t len;
    cr_assert_eq(moirai_prom_writer_render(w, &text, &len), 0);
    char *copy = malloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = '\0';
    return copy;
}

static moirai_prom_writer_t *writer(void)
{
    moirai_prom_writer_t *w;
    cr_assert_eq(moirai_prom_writer_create(&w), 0);
    return w;
}

Test(prom, empty_writer_renders_nothing, .timeout = 10)
{
    moirai_prom_writer_t *w = writer();
    const char *text = NULL;
    size_t len = 99;
    cr_assert_eq(moirai_prom_writer_render(w, &text, &len), 0);
    cr_assert_not_null(text);
    cr_assert_eq(len, 0);
    moirai_prom_writer_destroy(w);
}

Test(prom, counter_gauge_histogram_round_trip, .timeout = 10)
{
    moirai_prom_writer_t *w = writer();
    int c =
        moirai_prom_writer_family(w, "app_requests_total", MOIRAI_PROM_COUNTER, "Requests served.");
    int g = moirai_prom_writer_family(w, "app:temperature_celsius", MOIRAI_PROM_GAUGE, NULL);
    int h = moirai_prom_writer_family(w, "app_latency_seconds", MOIRAI_PROM_HISTOGRAM, "Latency.");
    cr_assert(c >= 0 && g >= 0 && h >= 0);
    cr_assert(c != g && g != h && c != h);
    moirai_prom_label_t l[] = {{"code", "200"}, {"method", "GET"}};
    cr_assert_eq(moirai_prom_writer_sample_u64(w, c, l, 2, 12345), 0);
    cr_assert_eq(moirai_prom_writer_sample_u64(w, c, NULL, 0, UINT64_MAX), 0);
    cr_assert_eq(moirai_prom_writer_sample(w, g, NULL, 0, -12.5), 0);
    double bounds[] = {0.001, 0.01, 0.1};
    uint64_t counts[] = {3, 4, 5, 6};
    cr_assert_eq(moirai_prom_writer_histogram(w, h, l, 1, bounds, counts, 3, 1.25), 0);

    prom_doc_t d;
    render_parse(w, &d);
    cr_assert_eq(d.nfamilies, 3);
    cr_assert_str_eq(d.families[0].name, "app_requests_total");
    cr_assert_str_eq(d.families[0].type, "counter");
    cr_assert_str_eq(d.families[0].help, "Requests served.");
    cr_assert_str_eq(d.families[1].type, "gauge");
    cr_assert(!d.families[1].has_help);
    cr_assert_str_eq(d.families[2].type, "histogram");
    cr_assert_eq(prom_value(&d, "app_requests_total", PROM_LABELS("code", "200")), 12345.0);
    /* 2^64 - 1 is written exactly, not rounded through a double. */
    const prom_sample_t *big = NULL;
    for (int i = 0; i < d.nsamples; i++)
        if (!strcmp(d.samples[i].name, "app_requests_total") && d.samples[i].nlabels == 0)
            big = &d.samples[i];
    cr_assert_not_null(big);
    cr_assert_str_eq(big->value_text, "18446744073709551615");
    cr_assert_eq(prom_value(&d, "app:temperature_celsius", NULL), -12.5);
    /* Cumulative buckets: 3, 7, 12, 18 (+Inf), count 18, sum 1.25. */
    cr_assert_eq(prom_value(&d, "app_latency_seconds_bucket", PROM_LABELS("le", "0.001")), 3.0);
    cr_assert_eq(prom_value(&d, "app_latency_seconds_bucket", PROM_LABELS("le", "0.01")), 7.0);
    cr_assert_eq(prom_value(&d, "app_latency_seconds_bucket", PROM_LABELS("le", "0.1")), 12.0);
    cr_assert_eq(prom_value(&d, "app_latency_seconds_bucket", PROM_LABELS("le", "+Inf")), 18.0);
    cr_assert_eq(prom_value(&d, "app_latency_seconds_count", PROM_LABELS("code", "200")), 18.0);
    cr_assert_eq(prom_value(&d, "app_latency_seconds_sum", NULL), 1.25);
    /* The le label comes after the caller's labels. */
    const prom_sample_t *b = prom_find(&d, "app_latency_seconds_bucket", PROM_LABELS("le", "0.1"));
    cr_assert_eq(b->nlabels, 2);
    cr_assert_str_eq(b->label_name[0], "code");
    cr_assert_str_eq(b->label_name[1], "le");
    prom_doc_free(&d);
    moirai_prom_writer_destroy(w);
}

Test(prom, exact_text, .timeout = 10)
{
    moirai_prom_writer_t *w = writer();
    int c = moirai_prom_writer_family(w, "x_total", MOIRAI_PROM_COUNTER, "An x.");
    moirai_prom_label_t l[] = {{"a", "1"}};
    cr_assert_eq(moirai_prom_writer_sample_u64(w, c, l, 1, 7), 0);
    cr_assert_eq(moirai_prom_writer_sample(w, c, NULL, 0, 0.1), 0);
    int h = moirai_prom_writer_family(w, "h", MOIRAI_PROM_HISTOGRAM, NULL);
    uint64_t counts[] = {2};
    cr_assert_eq(moirai_prom_writer_histogram(w, h, NULL, 0, NULL, counts, 0, 0.5), 0);
    char *text = render_copy(w);
    cr_assert_str_eq(text, "# HELP x_total An x.\n"
                           "# TYPE x_total counter\n"
                           "x_total{a=\"1\"} 7\n"
                           "x_total 0.1\n"
                           "# TYPE h histogram\n"
                           "h_bucket{le=\"+Inf\"} 2\n"
                           "h_sum 0.5\n"
                           "h_count 2\n");
    free(text);
    moirai_prom_writer_destroy(w);
}

Test(prom, families_stay_contiguous_whatever_the_order, .timeout = 10)
{
    moirai_prom_writer_t *w = writer();
    /* Two "objects" written one after the other, each declaring the same
     * two families: the samples interleave in the calls but not in the
     * text. */
    for (int obj = 0; obj < 3; obj++) {
        char name[8];
        snprintf(name, sizeof(name), "o%d", obj);
        moirai_prom_label_t l[] = {{"name", name}};
        int a = moirai_prom_writer_family(w, "a_total", MOIRAI_PROM_COUNTER, "A.");
        int b = moirai_prom_writer_family(w, "b", MOIRAI_PROM_GAUGE, "B.");
        cr_assert_eq(a, 0);
        cr_assert_eq(b, 1);
        cr_assert_eq(moirai_prom_writer_sample_u64(w, a, l, 1, (uint64_t)obj), 0);
        cr_assert_eq(moirai_prom_writer_sample_u64(w, b, l, 1, (uint64_t)obj * 10), 0);
    }
    prom_doc_t d;
    render_parse(w, &d); /* the parser fails on a family split in two */
    cr_assert_eq(d.nfamilies, 2);
    cr_assert_eq(d.nsamples, 6);
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(d.samples[i].name, "a_total");
        cr_assert_eq(d.samples[i].value, (double)i);
        cr_assert_str_eq(d.samples[3 + i].name, "b");
        cr_assert_eq(d.samples[3 + i].value, (double)i * 10);
    }
    prom_doc_free(&d);
    moirai_prom_writer_destroy(w);
}

Test(prom, label_values_and_help_are_escaped, .timeout = 10)
{
    static const char *odd[] = {
        "back\\slash", "quote\"d",  "new\nline",  "\\\"\n\\n",       "",
        "{a=\"b\"},c", "ünïcödé ✓", "trailing\\", "# not a comment", "\n\n",
    };
    enum { N = sizeof(odd) / sizeof(odd[0]) };
    moirai_prom_writer_t *w = writer();
    const char *help = "Help with \\ and \"quotes\"\nand a second line.";
    int g = moirai_prom_writer_family(w, "odd", MOIRAI_PROM_GAUGE, help);
    for (int i = 0; i < N; i++) {
        char idx[8];
        snprintf(idx, sizeof(idx), "%d", i);
        moirai_prom_label_t l[] = {{"i", idx}, {"v", odd[i]}};
        cr_assert_eq(moirai_prom_writer_sample(w, g, l, 2, i), 0);
    }
    char *text = render_copy(w);
    /* The exact escapes: a backslash doubled, a quote and a newline as
     * \" and \n in label values; HELP escapes backslash and newline only. */
    cr_assert(strstr(text, "# HELP odd Help with \\\\ and \"quotes\"\\nand a second line.\n"));
    cr_assert(strstr(text, "v=\"back\\\\slash\""));
    cr_assert(strstr(text, "v=\"quote\\\"d\""));
    cr_assert(strstr(text, "v=\"new\\nline\""));
    cr_assert(strstr(text, "v=\"\\\\\\\"\\n\\\\n\""));
    cr_assert(strstr(text, "v=\"trailing\\\\\""));
    free(text);
    prom_doc_t d;
    render_parse(w, &d);
    cr_assert_str_eq(d.families[0].help, help);
    cr_assert_eq(d.nsamples, N);
    for (int i = 0; i < N; i++) {
        cr_assert_str_eq(d.samples[i].label_value[1], odd[i], "value %d", i);
        cr_assert_eq(d.samples[i].value, (double)i);
    }
    prom_doc_free(&d);
    moirai_prom_writer_destroy(w);
}

Test(prom, values_round_trip, .timeout = 10)
{
    static const double values[] = {
        0,    -0.0,   0.1,  1.0 / 3,  1e-9,      123456789.125,     1e300,
        -2.5, 5e-324, 1e21, INFINITY, -INFINITY, 9007199254740993.0};
    enum { N = sizeof(values) / sizeof(values[0]) };
    moirai_prom_writer_t *w = writer();
    int g = moirai_prom_writer_family(w, "v", MOIRAI_PROM_GAUGE, NULL);
    for (int i = 0; i < N; i++) {
        char idx[8];
        snprintf(idx, sizeof(idx), "%d", i);
        moirai_prom_label_t l[] = {{"i", idx}};
        cr_assert_eq(moirai_prom_writer_sample(w, g, l, 1, values[i]), 0);
    }
    moirai_prom_label_t nan_label[] = {{"i", "nan"}};
    cr_assert_eq(moirai_prom_writer_sample(w, g, nan_label, 1, NAN), 0);
    prom_doc_t d;
    render_parse(w, &d);
    for (int i = 0; i < N; i++)
        cr_assert_eq(d.samples[i].value, values[i], "value %d: %s", i, d.samples[i].value_text);
    cr_assert_str_eq(d.samples[2].value_text, "0.1"); /* the shortest form */
    cr_assert_str_eq(d.samples[10].value_text, "+Inf");
    cr_assert_str_eq(d.samples[11].value_text, "-Inf");
    cr_assert_str_eq(d.samples[N].value_text, "NaN");
    prom_doc_free(&d);
    moirai_prom_writer_destroy(w);
}

Test(prom, bad_metric_names_are_einval, .timeout = 10)
{
    static const char *bad[] = {"", "1abc", "a-b", "a b", "a.b", "é", "a{", "a\n", "a\"b"};
    static const char *good[] = {"a", "_", ":", "a1", "A_b:c9", "::x", "_9"};
    moirai_prom_writer_t *w = writer();
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(moirai_prom_writer_family(w, bad[i], MOIRAI_PROM_GAUGE, NULL), -EINVAL, "%s",
                     bad[i]);
    cr_assert_eq(moirai_prom_writer_family(w, NULL, MOIRAI_PROM_GAUGE, NULL), -EINVAL);
    cr_assert_eq(moirai_prom_writer_family(NULL, "a", MOIRAI_PROM_GAUGE, NULL), -EINVAL);
    cr_assert_eq(moirai_prom_writer_family(w, "a", (moirai_prom_type_t)0, NULL), -EINVAL);
    cr_assert_eq(moirai_prom_writer_family(w, "a", (moirai_prom_type_t)4, NULL), -EINVAL);
    cr_assert_eq(moirai_prom_writer_mark(w).families, 0, "a refused family was declared");
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cr_assert_eq(moirai_prom_writer_family(w, good[i], MOIRAI_PROM_GAUGE, NULL), (int)i, "%s",
                     good[i]);
    /* The same family again: the same id; with another type or help: refused. */
    cr_assert_eq(moirai_prom_writer_family(w, "a", MOIRAI_PROM_GAUGE, NULL), 0);
    cr_assert_eq(moirai_prom_writer_family(w, "a", MOIRAI_PROM_COUNTER, NULL), -EINVAL);
    cr_assert_eq(moirai_prom_writer_family(w, "a", MOIRAI_PROM_GAUGE, "other"), -EINVAL);
    int h = moirai_prom_writer_family(w, "hh", MOIRAI_PROM_HISTOGRAM, "H");
    cr_assert_eq(moirai_prom_writer_family(w, "hh", MOIRAI_PROM_HISTOGRAM, "H"), h);
    cr_assert_eq(moirai_prom_writer_family(w, "hh", MOIRAI_PROM_HISTOGRAM, NULL), -EINVAL);
    moirai_prom_writer_destroy(w);
}

Test(prom, bad_samples_are_einval_and_add_nothing, .timeout = 10)
{
    moirai_prom_writer_t *w = writer();
    int g = moirai_prom_writer_family(w, "g", MOIRAI_PROM_GAUGE, NULL);
    int c = moirai_prom_writer_family(w, "c_total", MOIRAI_PROM_COUNTER, NULL);
    int h = moirai_prom_writer_family(w, "h", MOIRAI_PROM_HISTOGRAM, NULL);
    cr_assert_eq(moirai_prom_writer_sample_u64(w, g, NULL, 0, 1), 0);
    moirai_prom_mark_t before = moirai_prom_writer_mark(w);

    static const char *bad_labels[] = {"", "__name", "__", "1a", "a:b", "a-b", "a b", "é"};
    for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++) {
        moirai_prom_label_t l[] = {{bad_labels[i], "v"}};
        cr_assert_eq(moirai_prom_writer_sample(w, g, l, 1, 1), -EINVAL, "%s", bad_labels[i]);
        cr_assert_eq(moirai_prom_writer_sample_u64(w, g, l, 1, 1), -EINVAL);
    }
    moirai_prom_label_t null_name[] = {{NULL, "v"}};
    moirai_prom_label_t null_value[] = {{"a", NULL}};
    moirai_prom_label_t twice[] = {{"a", "1"}, {"b", "2"}, {"a", "3"}};
    moirai_prom_label_t le[] = {{"le", "1"}};
    cr_assert_eq(moirai_prom_writer_sample(w, g, null_name, 1, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_sample(w, g, null_value, 1, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_sample(w, g, twice, 3, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_sample(w, g, NULL, 1, 1), -EINVAL);
    /* Unknown family ids, a histogram through sample, counters below 0. */
    cr_assert_eq(moirai_prom_writer_sample(w, -1, NULL, 0, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_sample(w, 3, NULL, 0, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_sample(NULL, g, NULL, 0, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_sample(w, h, NULL, 0, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_sample_u64(w, h, NULL, 0, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_sample(w, c, NULL, 0, -1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_sample(w, c, NULL, 0, NAN), -EINVAL);
    cr_assert_eq(moirai_prom_writer_sample(w, c, NULL, 0, -INFINITY), -EINVAL);
    /* Histograms: le is the writer's, bounds finite and increasing. */
    double bounds[] = {1, 2};
    double flat[] = {1, 1};
    double inf[] = {1, INFINITY};
    double nan_b[] = {NAN, 1};
    uint64_t counts[] = {1, 2, 3};
    uint64_t huge[] = {UINT64_MAX, 1, 0};
    cr_assert_eq(moirai_prom_writer_histogram(w, h, le, 1, bounds, counts, 2, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_histogram(w, h, NULL, 0, flat, counts, 2, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_histogram(w, h, NULL, 0, inf, counts, 2, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_histogram(w, h, NULL, 0, nan_b, counts, 2, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_histogram(w, h, NULL, 0, NULL, counts, 2, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_histogram(w, h, NULL, 0, bounds, NULL, 2, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_histogram(w, h, NULL, 0, bounds, counts, 2, NAN), -EINVAL);
    cr_assert_eq(moirai_prom_writer_histogram(w, h, NULL, 0, bounds, huge, 2, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_histogram(w, g, NULL, 0, bounds, counts, 2, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_histogram(NULL, h, NULL, 0, bounds, counts, 2, 1), -EINVAL);
    cr_assert_eq(moirai_prom_writer_histogram(w, h, null_value, 1, bounds, counts, 2, 1), -EINVAL);

    moirai_prom_mark_t after = moirai_prom_writer_mark(w);
    cr_assert_eq(after.records, before.records, "a refused sample was added");
    cr_assert_eq(after.families, before.families);
    /* An "le" label is fine outside histograms. */
    cr_assert_eq(moirai_prom_writer_sample(w, g, le, 1, 1), 0);
    moirai_prom_writer_destroy(w);
}

Test(prom, null_arguments, .timeout = 10)
{
    const char *text;
    size_t len;
    moirai_prom_writer_t *w = writer();
    cr_assert_eq(moirai_prom_writer_create(NULL), -EINVAL);
    cr_assert_eq(moirai_prom_writer_render(NULL, &text, &len), -EINVAL);
    cr_assert_eq(moirai_prom_writer_render(w, NULL, &len), -EINVAL);
    cr_assert_eq(moirai_prom_writer_render(w, &text, NULL), -EINVAL);
    moirai_prom_mark_t m = moirai_prom_writer_mark(NULL);
    cr_assert_eq(m.records, 0);
    cr_assert_eq(m.families, 0);
    moirai_prom_writer_rollback(NULL, m);
    moirai_prom_writer_reset(NULL);
    moirai_prom_writer_destroy(NULL);
    moirai_prom_writer_destroy(w);
    moirai_metrics_registry_t *reg;
    cr_assert_eq(moirai_metrics_registry_create(NULL), -EINVAL);
    cr_assert_eq(moirai_metrics_registry_create(&reg), 0);
    cr_assert_eq(moirai_metrics_registry_write(reg, NULL), -EINVAL);
    cr_assert_eq(moirai_metrics_registry_write(NULL, w), -EINVAL);
    moirai_metrics_registry_destroy(NULL);
    moirai_metrics_registry_destroy(reg);
}

Test(prom, marks_nest_and_roll_back, .timeout = 10)
{
    moirai_prom_writer_t *w = writer();
    int a = moirai_prom_writer_family(w, "a", MOIRAI_PROM_GAUGE, NULL);
    cr_assert_eq(moirai_prom_writer_sample(w, a, NULL, 0, 1), 0);
    char *base = render_copy(w);
    moirai_prom_mark_t outer = moirai_prom_writer_mark(w);
    cr_assert_eq(moirai_prom_writer_sample(w, a, NULL, 0, 2), 0);
    int b = moirai_prom_writer_family(w, "b", MOIRAI_PROM_GAUGE, NULL);
    cr_assert_eq(moirai_prom_writer_sample(w, b, NULL, 0, 3), 0);
    char *middle = render_copy(w);
    moirai_prom_mark_t inner = moirai_prom_writer_mark(w);
    int c = moirai_prom_writer_family(w, "c", MOIRAI_PROM_GAUGE, NULL);
    cr_assert_eq(moirai_prom_writer_sample(w, c, NULL, 0, 4), 0);
    cr_assert_eq(moirai_prom_writer_sample(w, a, NULL, 0, 5), 0);

    moirai_prom_writer_rollback(w, inner);
    char *text = render_copy(w);
    cr_assert_str_eq(text, middle);
    free(text);
    cr_assert_eq(moirai_prom_writer_sample(w, c, NULL, 0, 4), -EINVAL, "c was rolled back");
    cr_assert_eq(moirai_prom_writer_sample(w, b, NULL, 0, 6), 0, "b survives");
    /* The index forgot c and still finds a and b. */
    cr_assert_eq(moirai_prom_writer_family(w, "b", MOIRAI_PROM_GAUGE, NULL), b);
    cr_assert_eq(moirai_prom_writer_family(w, "a", MOIRAI_PROM_GAUGE, NULL), a);
    moirai_prom_mark_t again = moirai_prom_writer_mark(w);
    cr_assert_eq(moirai_prom_writer_family(w, "c", MOIRAI_PROM_COUNTER, NULL), c,
                 "c is new again, under the id it had, with another type");
    moirai_prom_writer_rollback(w, again);
    moirai_prom_writer_rollback(w, outer);
    text = render_copy(w);
    cr_assert_str_eq(text, base);
    free(text);
    /* A stale mark (inner, beyond the contents now) is ignored. */
    moirai_prom_writer_rollback(w, inner);
    text = render_copy(w);
    cr_assert_str_eq(text, base);
    free(text);
    /* The writer grows again differently past the stale mark: a new
     * family takes id 1 and the stale mark would cut into a record or
     * orphan it; it is still ignored. */
    int d = moirai_prom_writer_family(w, "d", MOIRAI_PROM_GAUGE, NULL);
    moirai_prom_label_t l[] = {{"long", "a label long enough to pass the stale mark's offset"}};
    cr_assert_eq(moirai_prom_writer_sample(w, d, l, 1, 7), 0);
    cr_assert_eq(moirai_prom_writer_sample(w, d, l, 1, 8), 0);
    char *grown = render_copy(w);
    moirai_prom_writer_rollback(w, inner);
    text = render_copy(w);
    cr_assert_str_eq(text, grown);
    free(text);
    /* After a reset, every earlier mark is ignored too. */
    moirai_prom_writer_reset(w);
    moirai_prom_writer_rollback(w, outer);
    const char *t;
    size_t len;
    cr_assert_eq(moirai_prom_writer_render(w, &t, &len), 0);
    cr_assert_eq(len, 0);
    free(base);
    free(middle);
    free(grown);
    moirai_prom_writer_destroy(w);
}

Test(prom, reset_and_render_again, .timeout = 10)
{
    moirai_prom_writer_t *w = writer();
    for (int round = 0; round < 3; round++) {
        int f = moirai_prom_writer_family(w, "r", MOIRAI_PROM_GAUGE, NULL);
        cr_assert_eq(f, 0, "ids start again after a reset");
        cr_assert_eq(moirai_prom_writer_sample(w, f, NULL, 0, round), 0);
        char *one = render_copy(w);
        char *two = render_copy(w);
        cr_assert_str_eq(one, two, "rendering changes nothing");
        prom_doc_t d;
        render_parse(w, &d);
        cr_assert_eq(d.nsamples, 1);
        cr_assert_eq(d.samples[0].value, round);
        prom_doc_free(&d);
        free(one);
        free(two);
        moirai_prom_writer_reset(w);
    }
    moirai_prom_writer_destroy(w);
}

Test(prom, many_families_and_samples, .timeout = 30)
{
    /* Enough to grow every buffer several times. */
    moirai_prom_writer_t *w = writer();
    for (int round = 0; round < 20; round++) {
        for (int f = 0; f < 50; f++) {
            char name[16], idx[16];
            snprintf(name, sizeof(name), "f%d", f);
            snprintf(idx, sizeof(idx), "%d", round);
            int id = moirai_prom_writer_family(w, name, MOIRAI_PROM_COUNTER, name);
            cr_assert_eq(id, f);
            moirai_prom_label_t l[] = {{"round", idx}};
            cr_assert_eq(moirai_prom_writer_sample_u64(w, id, l, 1, (uint64_t)(round * 100 + f)),
                         0);
        }
    }
    prom_doc_t d;
    render_parse(w, &d);
    cr_assert_eq(d.nfamilies, 50);
    cr_assert_eq(d.nsamples, 1000);
    for (int i = 0; i < 1000; i++) {
        int f = i / 20, round = i % 20;
        cr_assert_eq(d.samples[i].family, f);
        cr_assert_eq(d.samples[i].value, round * 100 + f);
    }
    prom_doc_free(&d);
    moirai_prom_writer_destroy(w);
}

/* ---- out of memory ---- */

typedef struct oom_ctx {
    moirai_prom_writer_t *w;
    moirai_metrics_registry_t *reg;
    char *before; /* the rendered text before the operation */
    int family;
    char long_value[6000];
} oom_ctx_t;

static void assert_unchanged(void *arg, long n)
{
    oom_ctx_t *ctx = arg;
    char *now = render_copy(ctx->w);
    cr_assert_str_eq(now, ctx->before, "allocation %ld failed and the contents changed", n);
    free(now);
}

static int op_family(void *arg)
{
    oom_ctx_t *ctx = arg;
    int id = moirai_prom_writer_family(ctx->w, "fresh_family", MOIRAI_PROM_GAUGE, "Fresh.");
    return id < 0 ? id : 0;
}

static int op_sample(void *arg)
{
    oom_ctx_t *ctx = arg;
    moirai_prom_label_t l[] = {{"v", ctx->long_value}};
    return moirai_prom_writer_sample(ctx->w, ctx->family, l, 1, 1);
}

static int op_histogram(void *arg)
{
    oom_ctx_t *ctx = arg;
    moirai_prom_label_t l[] = {{"v", ctx->long_value}};
    double bounds[] = {1, 2, 4};
    uint64_t counts[] = {1, 1, 1, 1};
    /* Two calls, so undone together on failure, as a collector does. */
    moirai_prom_mark_t mark = moirai_prom_writer_mark(ctx->w);
    int h = moirai_prom_writer_family(ctx->w, "oom_h", MOIRAI_PROM_HISTOGRAM, NULL);
    int err = h < 0 ? h : moirai_prom_writer_histogram(ctx->w, h, l, 1, bounds, counts, 3, 4);
    if (err)
        moirai_prom_writer_rollback(ctx->w, mark);
    return err;
}

static void oom_setup(oom_ctx_t *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    memset(ctx->long_value, 'x', sizeof(ctx->long_value) - 1);
    ctx->w = writer();
    ctx->family = moirai_prom_writer_family(ctx->w, "g", MOIRAI_PROM_GAUGE, "G.");
    cr_assert_eq(moirai_prom_writer_sample(ctx->w, ctx->family, NULL, 0, 1), 0);
    ctx->before = render_copy(ctx->w);
}

static void oom_teardown(oom_ctx_t *ctx)
{
    free(ctx->before);
    moirai_prom_writer_destroy(ctx->w);
}

Test(prom, oom_family_sample_histogram, .timeout = 60)
{
    int (*ops[])(void *) = {op_family, op_sample, op_histogram};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        oom_ctx_t ctx;
        oom_setup(&ctx);
        moirai_test_oom_install();
        long failures = MOIRAI_TEST_OOM_SWEEP(ops[i], assert_unchanged, &ctx);
        moirai_test_oom_uninstall();
        cr_assert_gt(failures, 0, "op %zu allocates", i);
        oom_teardown(&ctx);
    }
}

Test(prom, oom_family_growing_the_array_and_the_index, .timeout = 60)
{
    /* 32 families fill the array (16, then 32 entries) and half the
     * 64-slot index: the 33rd grows both, then copies its name and help.
     * Run 0 fails the array's growth, run 1 the index's (the array keeps
     * its new capacity, which is no content), run 2 the help's copy (the
     * index kept its capacity; a failing name copy is in
     * oom_family_sample_histogram); none changes the contents. */
    oom_ctx_t ctx;
    oom_setup(&ctx);
    for (int i = 1; i < 32; i++) {
        char name[16];
        snprintf(name, sizeof(name), "g%d", i);
        cr_assert_eq(moirai_prom_writer_family(ctx.w, name, MOIRAI_PROM_GAUGE, NULL), i);
    }
    free(ctx.before);
    ctx.before = render_copy(ctx.w);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(op_family, assert_unchanged, &ctx);
    moirai_test_oom_uninstall();
    cr_assert_eq(failures, 3, "%ld", failures);
    /* Every family is still found under its id, the new one too. */
    for (int i = 1; i < 32; i++) {
        char name[16];
        snprintf(name, sizeof(name), "g%d", i);
        cr_assert_eq(moirai_prom_writer_family(ctx.w, name, MOIRAI_PROM_GAUGE, NULL), i);
    }
    cr_assert_eq(moirai_prom_writer_family(ctx.w, "fresh_family", MOIRAI_PROM_GAUGE, "Fresh."), 32);
    oom_teardown(&ctx);
}

static int op_create(void *arg)
{
    (void)arg;
    moirai_prom_writer_t *w = NULL;
    int err = moirai_prom_writer_create(&w);
    moirai_prom_writer_destroy(w);
    if (err)
        return err;
    moirai_metrics_registry_t *reg = NULL;
    err = moirai_metrics_registry_create(&reg);
    moirai_metrics_registry_destroy(reg);
    return err;
}

Test(prom, oom_create, .timeout = 60)
{
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(op_create, NULL, NULL);
    moirai_test_oom_uninstall();
    cr_assert_eq(failures, 2);
}

static int op_render(void *arg)
{
    oom_ctx_t *ctx = arg;
    const char *text = (const char *)ctx; /* sentinels: untouched on error */
    size_t len = 12345;
    int err = moirai_prom_writer_render(ctx->w, &text, &len);
    if (err) {
        cr_assert_eq(text, (const char *)ctx);
        cr_assert_eq(len, 12345);
    }
    return err;
}

Test(prom, oom_render, .timeout = 60)
{
    oom_ctx_t ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.w = writer();
    int g = moirai_prom_writer_family(ctx.w, "g", MOIRAI_PROM_GAUGE, NULL);
    cr_assert_eq(moirai_prom_writer_sample(ctx.w, g, NULL, 0, 1), 0);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(op_render, NULL, &ctx);
    moirai_test_oom_uninstall();
    cr_assert_eq(failures, 1);
    moirai_prom_writer_destroy(ctx.w);
}

/* ---- the registry ---- */

typedef struct thing {
    uint64_t value;
    int fail;           /* the error to return after writing, or 0 */
    atomic_int calls;   /* relaxed: read after the writes that count */
    atomic_int retired; /* set once removed: a call after that is a bug */
} thing_t;

static int thing_collect(void *arg, moirai_prom_writer_t *w, const char *name)
{
    thing_t *t = arg;
    atomic_fetch_add_explicit(&t->calls, 1, memory_order_relaxed);
    cr_assert_eq(atomic_load_explicit(&t->retired, memory_order_relaxed), 0,
                 "a collector ran after its remove returned");
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    moirai_prom_label_t l[] = {{"name", name}};
    int f = moirai_prom_writer_family(w, "thing_value", MOIRAI_PROM_GAUGE, "A thing's value.");
    int err = f < 0 ? f : moirai_prom_writer_sample_u64(w, f, l, 1, t->value);
    int g =
        err ? err : moirai_prom_writer_family(w, "thing_calls_total", MOIRAI_PROM_COUNTER, NULL);
    err = g < 0 ? g : moirai_prom_writer_sample_u64(w, g, l, 1, t->value * 2);
    if (!err && t->fail)
        err = t->fail; /* written, then failed: the registry must undo it */
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}

static int other_collect(void *arg, moirai_prom_writer_t *w, const char *name)
{
    (void)arg;
    moirai_prom_label_t l[] = {{"name", name}};
    int f = moirai_prom_writer_family(w, "other", MOIRAI_PROM_GAUGE, NULL);
    return f < 0 ? f : moirai_prom_writer_sample(w, f, l, 1, 0.5);
}

Test(prom, registry_writes_every_collector_in_order, .timeout = 10)
{
    moirai_metrics_registry_t *reg;
    cr_assert_eq(moirai_metrics_registry_create(&reg), 0);
    thing_t a = {.value = 1}, b = {.value = 2}, c = {.value = 3};
    cr_assert_eq(moirai_metrics_registry_add(reg, "a", thing_collect, &a), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "odd \"name\"\n", other_collect, NULL), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "b", thing_collect, &b), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "c", thing_collect, &c), 0);
    /* The same collector under a name or with an object it already has. */
    cr_assert_eq(moirai_metrics_registry_add(reg, "a", thing_collect, &c), -EEXIST);
    cr_assert_eq(moirai_metrics_registry_add(reg, "z", thing_collect, &a), -EEXIST);
    /* Another collector may reuse a name. */
    cr_assert_eq(moirai_metrics_registry_add(reg, "a", other_collect, &a), 0);
    cr_assert_eq(moirai_metrics_registry_add(NULL, "a", thing_collect, &a), -EINVAL);
    cr_assert_eq(moirai_metrics_registry_add(reg, NULL, thing_collect, &a), -EINVAL);
    cr_assert_eq(moirai_metrics_registry_add(reg, "q", NULL, &a), -EINVAL);

    moirai_prom_writer_t *w = writer();
    cr_assert_eq(moirai_metrics_registry_write(reg, w), 0);
    prom_doc_t d;
    render_parse(w, &d);
    cr_assert_eq(d.nfamilies, 3);
    cr_assert_str_eq(d.families[0].name, "thing_value");
    cr_assert_str_eq(d.families[1].name, "thing_calls_total");
    cr_assert_str_eq(d.families[2].name, "other");
    cr_assert_eq(prom_count(&d, "thing_value"), 3);
    cr_assert_eq(prom_value(&d, "thing_value", PROM_LABELS("name", "a")), 1.0);
    cr_assert_eq(prom_value(&d, "thing_value", PROM_LABELS("name", "b")), 2.0);
    cr_assert_eq(prom_value(&d, "thing_calls_total", PROM_LABELS("name", "c")), 6.0);
    cr_assert_eq(prom_value(&d, "other", PROM_LABELS("name", "odd \"name\"\n")), 0.5);
    cr_assert_eq(prom_value(&d, "other", PROM_LABELS("name", "a")), 0.5);
    /* In the order added within each family. */
    cr_assert_str_eq(d.samples[0].label_value[0], "a");
    cr_assert_str_eq(d.samples[1].label_value[0], "b");
    cr_assert_str_eq(d.samples[2].label_value[0], "c");
    prom_doc_free(&d);

    /* Removed: not written any more; a second remove finds nothing. */
    cr_assert_eq(moirai_metrics_registry_remove(reg, thing_collect, &b), 0);
    cr_assert_eq(moirai_metrics_registry_remove(reg, thing_collect, &b), -ENOENT);
    cr_assert_eq(moirai_metrics_registry_remove(reg, other_collect, &b), -ENOENT);
    cr_assert_eq(moirai_metrics_registry_remove(NULL, thing_collect, &b), -EINVAL);
    cr_assert_eq(moirai_metrics_registry_remove(reg, NULL, &b), -EINVAL);
    moirai_prom_writer_reset(w);
    cr_assert_eq(moirai_metrics_registry_write(reg, w), 0);
    render_parse(w, &d);
    cr_assert_eq(prom_count(&d, "thing_value"), 2);
    cr_assert(isnan(prom_value(&d, "thing_value", PROM_LABELS("name", "b"))));
    cr_assert_str_eq(d.samples[0].label_value[0], "a");
    cr_assert_str_eq(d.samples[1].label_value[0], "c");
    prom_doc_free(&d);
    cr_assert_eq(atomic_load(&b.calls), 1);
    moirai_prom_writer_destroy(w);
    moirai_metrics_registry_destroy(reg);
}

Test(prom, registry_write_failure_leaves_the_writer_as_it_was, .timeout = 10)
{
    moirai_metrics_registry_t *reg;
    cr_assert_eq(moirai_metrics_registry_create(&reg), 0);
    thing_t a = {.value = 1}, b = {.value = 2, .fail = -EIO};
    cr_assert_eq(moirai_metrics_registry_add(reg, "a", thing_collect, &a), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "o", other_collect, NULL), 0);
    cr_assert_eq(moirai_metrics_registry_add(reg, "b", thing_collect, &b), 0);
    moirai_prom_writer_t *w = writer();
    int pre = moirai_prom_writer_family(w, "pre", MOIRAI_PROM_GAUGE, NULL);
    cr_assert_eq(moirai_prom_writer_sample(w, pre, NULL, 0, 9), 0);
    char *before = render_copy(w);
    cr_assert_eq(moirai_metrics_registry_write(reg, w), -EIO);
    char *after = render_copy(w);
    cr_assert_str_eq(after, before);
    cr_assert_eq(atomic_load(&a.calls), 1);
    cr_assert_eq(atomic_load(&b.calls), 1);
    free(before);
    free(after);
    moirai_prom_writer_destroy(w);
    moirai_metrics_registry_destroy(reg);
}

static thing_t oom_things[20];

static int op_registry_add(void *arg)
{
    oom_ctx_t *ctx = arg;
    /* Enough entries that the list grows during the sweep's last run. */
    for (int i = 0; i < 20; i++) {
        char name[8];
        snprintf(name, sizeof(name), "t%d", i);
        int err = moirai_metrics_registry_add(ctx->reg, name, thing_collect, &oom_things[i]);
        if (err == -ENOMEM) {
            /* Nothing of this add is registered: the earlier ones are
             * removed so each run starts empty. */
            for (int j = 0; j < i; j++)
                cr_assert_eq(
                    moirai_metrics_registry_remove(ctx->reg, thing_collect, &oom_things[j]), 0);
            cr_assert_eq(moirai_metrics_registry_remove(ctx->reg, thing_collect, &oom_things[i]),
                         -ENOENT);
            return err;
        }
        cr_assert_eq(err, 0);
    }
    return 0;
}

static void registry_empty(void *arg, long n)
{
    oom_ctx_t *ctx = arg;
    moirai_prom_writer_reset(ctx->w);
    cr_assert_eq(moirai_metrics_registry_write(ctx->reg, ctx->w), 0);
    cr_assert_eq(moirai_prom_writer_mark(ctx->w).families, 0, "run %ld left collectors", n);
}

Test(prom, oom_registry_add, .timeout = 60)
{
    oom_ctx_t ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.w = writer();
    cr_assert_eq(moirai_metrics_registry_create(&ctx.reg), 0);
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(op_registry_add, registry_empty, &ctx);
    moirai_test_oom_uninstall();
    /* Each add copies its name; the list grew in the early runs (run 1
     * failed its first growth) and keeps its capacity after removes. */
    cr_assert_geq(failures, 20);
    moirai_prom_writer_reset(ctx.w);
    cr_assert_eq(moirai_metrics_registry_write(ctx.reg, ctx.w), 0);
    prom_doc_t d;
    render_parse(ctx.w, &d);
    cr_assert_eq(prom_count(&d, "thing_value"), 20);
    prom_doc_free(&d);
    moirai_prom_writer_destroy(ctx.w);
    moirai_metrics_registry_destroy(ctx.reg);
}

static int op_registry_write(void *arg)
{
    oom_ctx_t *ctx = arg;
    return moirai_metrics_registry_write(ctx->reg, ctx->w);
}

Test(prom, oom_registry_write, .timeout = 60)
{
    oom_ctx_t ctx;
    oom_setup(&ctx);
    cr_assert_eq(moirai_metrics_registry_create(&ctx.reg), 0);
    static thing_t things[30];
    for (int i = 0; i < 30; i++) {
        char name[8];
        snprintf(name, sizeof(name), "t%d", i);
        things[i].value = (uint64_t)i;
        cr_assert_eq(moirai_metrics_registry_add(ctx.reg, name, thing_collect, &things[i]), 0);
    }
    moirai_test_oom_install();
    long failures = MOIRAI_TEST_OOM_SWEEP(op_registry_write, assert_unchanged, &ctx);
    moirai_test_oom_uninstall();
    cr_assert_gt(failures, 0);
    prom_doc_t d;
    render_parse(ctx.w, &d);
    cr_assert_eq(prom_count(&d, "thing_value"), 30);
    cr_assert_eq(prom_value(&d, "thing_calls_total", PROM_LABELS("name", "t29")), 58.0);
    prom_doc_free(&d);
    moirai_metrics_registry_destroy(ctx.reg);
    oom_teardown(&ctx);
}

/* ---- threads ---- */

enum { CHURN_ROUNDS = 200 };
static moirai_metrics_registry_t *churn_reg;
static atomic_int churn_done;

static void *churn_writer(void *arg)
{
    (void)arg;
    moirai_prom_writer_t *w = writer();
    int writes = 0;
    while (!atomic_load_explicit(&churn_done, memory_order_acquire) || writes == 0) {
        moirai_prom_writer_reset(w);
        cr_assert_eq(moirai_metrics_registry_write(churn_reg, w), 0);
        prom_doc_t d;
        render_parse(w, &d);
        prom_doc_free(&d);
        writes++;
    }
    moirai_prom_writer_destroy(w);
    return NULL;
}

Test(prom, remove_waits_for_a_write_in_progress, .timeout = 60)
{
    /* One thread writes the registry in a loop while this one adds and
     * removes collectors: a collector must never run after its remove
     * returned (thing_collect asserts it), and every write parses. */
    cr_assert_eq(moirai_metrics_registry_create(&churn_reg), 0);
    thing_t keep = {.value = 7};
    cr_assert_eq(moirai_metrics_registry_add(churn_reg, "keep", thing_collect, &keep), 0);
    pthread_t t;
    pthread_create(&t, NULL, churn_writer, NULL);
    for (int i = 0; i < CHURN_ROUNDS; i++) {
        thing_t *tmp = calloc(1, sizeof(*tmp));
        tmp->value = (uint64_t)i;
        cr_assert_eq(moirai_metrics_registry_add(churn_reg, "tmp", thing_collect, tmp), 0);
        sched_yield();
        cr_assert_eq(moirai_metrics_registry_remove(churn_reg, thing_collect, tmp), 0);
        atomic_store_explicit(&tmp->retired, 1, memory_order_relaxed);
        free(tmp); /* ASan reports a collector touching it now */
    }
    atomic_store_explicit(&churn_done, 1, memory_order_release);
    pthread_join(t, NULL);
    cr_assert_gt(atomic_load(&keep.calls), 0);
    moirai_metrics_registry_destroy(churn_reg);
}
