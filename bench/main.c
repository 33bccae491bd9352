/* moirai-bench: runs every registered benchmark case for Moirai and for its
 * peers in one process, interleaved round by round, and reports medians.
 *
 * Output, table mode (default): one row per implementation with its median,
 * the fastest and slowest round, and the ratio Moirai / peer (below 1.00
 * means Moirai is faster; every metric is "lower is better").
 *
 * Output, --json: one JSON object per line and nothing else on stdout:
 *   {"suite":"core","case":"handle_complete_join","impl":"moirai","metric":"ns_per_op","value":12.3}
 * A peer that was not built is reported as
 *   {"suite":"...","case":"...","impl":"ck","metric":"ns_per_op","missing":"reason"}
 * and an implementation whose work failed as
 *   {"suite":"...","case":"...","impl":"...","metric":"ns_per_op","failed":"reason"}
 *
 * With --baseline DIR, each ratio is compared with the band stored in
 * DIR/<suite>.txt (see baseline.h); what got worse is reported on stderr.
 *
 * Exit status: 0 when every selected implementation that was built ran, 1
 * when one failed, 2 for a usage error or an unreadable baseline, 3 when a
 * ratio regressed beyond the baseline's fail factor (and nothing failed). */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <moirai/core/clock.h>

#include "baseline.h"
#include "bench.h"
#include "plot.h"

/* Every suite, in module order. A new module adds one line here and its
 * bench/<module>/bench_<module>.c to bench/meson.build. */
static const struct {
    const char *name;
    bench_suite_fn cases;
} suites[] = {
    {"core", bench_core_cases},
    {"sync", bench_sync_locks_cases},
    {"sync", bench_sync_map_cases},
    {"sync", bench_sync_map_count_cases},
    {"sync", bench_sync_map_single_cases},
    {"sync", bench_sync_containers_cases},
    {"mem", bench_mem_cases},
    {"sched", bench_sched_cases},
    {"async", bench_async_cases},
    {"async", bench_async_io_cases},
    {"rt", bench_rt_cases},
    {"transport", bench_transport_cases},
    {"transport", bench_transport_mpi_cases},
};

#define SUITE_COUNT    (sizeof(suites) / sizeof(suites[0]))
#define DEFAULT_ROUNDS 7
#define QUICK_ROUNDS   3
#define MAX_ROUNDS     1000
/* Target duration of one round of the slowest implementation of a case
 * (see the iteration rule in bench.h). */
#define ROUND_BUDGET_NS       UINT64_C(1000000000)
#define QUICK_ROUND_BUDGET_NS UINT64_C(200000000)
#define PROBE_DIVISOR         64

typedef struct options {
    bool quick;
    bool json;
    bool list;
    const char *suite;          /* NULL: all */
    const char *name;           /* NULL: all */
    const char *plot;           /* SVG file to write, or NULL */
    const char *baseline;       /* directory of baselines to compare with, or NULL */
    const char *write_baseline; /* directory of baselines to widen, or NULL */
    int rounds;                 /* 0: the default for the mode */
} options_t;

/* Progress on stderr: the case running now, out of how many, since when. */
static size_t progress_done, progress_total;
static uint64_t progress_start_ns;

uint64_t bench_now_ns(void)
{
    return moirai_clock_now_ns();
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: moirai-bench [options]\n"
            "\n"
            "Runs each benchmark case for Moirai and its peers in one process,\n"
            "interleaved over rounds (one warm-up round discarded), and reports the\n"
            "median per implementation and the ratio Moirai / peer. Lower is better\n"
            "for every metric; a ratio below 1.00 means Moirai is faster.\n"
            "\n"
            "Each round of a case runs at most its registered iteration count, lowered\n"
            "after a short probe so that the slowest implementation's round takes\n"
            "about 1 s (0.2 s with --quick).\n"
            "\n"
            "options:\n"
            "  --quick        smaller rounds and %d of them: the whole run takes\n"
            "                 well under a minute\n"
            "  --json         one JSON object per line instead of the table:\n"
            "                 {\"suite\",\"case\",\"impl\",\"metric\",\"value\"}; a peer\n"
            "                 that was not built has \"missing\":\"reason\" instead of\n"
            "                 \"value\", a failed one \"failed\":\"reason\"\n"
            "  --suite NAME   only the cases of suite NAME\n"
            "  --case NAME    only the case NAME\n"
            "  --plot FILE    also write an SVG chart of the ratios Moirai / peer per\n"
            "                 case (log scale, 1.0 marked, misses in red) to FILE\n"
            "  --rounds N     measured rounds per implementation (default %d,\n"
            "                 %d with --quick)\n"
            "  --baseline DIR compare each ratio Moirai / peer with the band stored in\n"
            "                 DIR/<suite>.txt; report on stderr each one more than\n"
            "                 %.1fx worse than the band's worst, and fail (exit 3) when\n"
            "                 the median of three measurements is more than %.1fx worse\n"
            "  --write-baseline DIR\n"
            "                 widen the bands in DIR/<suite>.txt by this run's ratios\n"
            "                 (run it several times to record the noise)\n"
            "  --list         list suites, cases and implementations, then exit\n"
            "  --help         this text\n"
            "\n"
            "A progress line on stderr names each case as it starts; stdout carries\n"
            "only the results.\n"
            "\n"
            "exit status: 0 success, 1 an implementation failed, 2 usage error or\n"
            "unreadable baseline, 3 a ratio regressed beyond the baseline\n",
            QUICK_ROUNDS, DEFAULT_ROUNDS, QUICK_ROUNDS, BASELINE_WARN_FACTOR, BASELINE_FAIL_FACTOR);
}

static int parse_options(int argc, char **argv, options_t *opt)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = NULL;
        bool takes_value = !strcmp(arg, "--suite") || !strcmp(arg, "--case") ||
                           !strcmp(arg, "--rounds") || !strcmp(arg, "--plot") ||
                           !strcmp(arg, "--baseline") || !strcmp(arg, "--write-baseline");
        if (takes_value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "moirai-bench: %s needs a value\n", arg);
                return -1;
            }
            value = argv[++i];
        }
        if (!strcmp(arg, "--quick")) {
            opt->quick = true;
        } else if (!strcmp(arg, "--json")) {
            opt->json = true;
        } else if (!strcmp(arg, "--list")) {
            opt->list = true;
        } else if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(arg, "--suite")) {
            opt->suite = value;
        } else if (!strcmp(arg, "--case")) {
            opt->name = value;
        } else if (!strcmp(arg, "--plot")) {
            opt->plot = value;
        } else if (!strcmp(arg, "--baseline")) {
            opt->baseline = value;
        } else if (!strcmp(arg, "--write-baseline")) {
            opt->write_baseline = value;
        } else if (!strcmp(arg, "--rounds")) {
            char *end;
            errno = 0;
            long n = strtol(value, &end, 10);
            if (errno || *end || end == value || n < 1 || n > MAX_ROUNDS) {
                fprintf(stderr, "moirai-bench: --rounds wants 1..%d, not '%s'\n", MAX_ROUNDS,
                        value);
                return -1;
            }
            opt->rounds = (int)n;
        } else {
            fprintf(stderr, "moirai-bench: unknown option '%s' (try --help)\n", arg);
            return -1;
        }
    }
    if (opt->rounds == 0)
        opt->rounds = opt->quick ? QUICK_ROUNDS : DEFAULT_ROUNDS;
    return 0;
}

static bool selected(const options_t *opt, const bench_case_t *c)
{
    return (!opt->suite || !strcmp(opt->suite, c->suite)) &&
           (!opt->name || !strcmp(opt->name, c->name));
}

/* Writes `s` as a JSON string literal. Names are identifiers, but the
 * reasons a peer is missing are free text. */
static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void json_head(const bench_case_t *c, const char *impl)
{
    printf("{\"suite\":");
    json_string(c->suite);
    printf(",\"case\":");
    json_string(c->name);
    printf(",\"impl\":");
    json_string(impl);
    printf(",\"metric\":");
    json_string(c->metric);
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts `v` in place and returns its median. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), compare_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* Column widths of the table, from the selected cases. */
static int case_width = 4, impl_width = 6;

static void table_header(const options_t *opt)
{
    printf("moirai-bench: %d round%s per implementation after one warm-up, interleaved;%s\n",
           opt->rounds, opt->rounds == 1 ? "" : "s", opt->quick ? " quick;" : "");
    printf("median, fastest and slowest round; lower is better; ratio = moirai / impl\n"
           "(below 1.00: Moirai is faster).\n\n");
    printf("%-6s %-*s %-*s %-10s %12s %12s %12s %8s %10s\n", "suite", case_width, "case",
           impl_width, "impl", "metric", "median", "min", "max", "ratio", "iters");
}

static bool valid_value(double v)
{
    return v >= 0.0 && !isinf(v); /* false for NaN too */
}

/* The iteration count for a ns_per_op case: a probe run of each built
 * implementation estimates its cost per operation, and the count is
 * lowered so that the slowest one's round fits the budget. The probe runs
 * twice and the second run counts, because the first pays for cold caches,
 * page faults and the allocator's first growth, and overestimates several
 * times. Marks an implementation whose probe fails. */
static uint64_t calibrate(const options_t *opt, const bench_case_t *c, uint64_t iters, bool *failed)
{
    uint64_t probe = iters / PROBE_DIVISOR ? iters / PROBE_DIVISOR : 1;
    double worst = 0.0;
    for (size_t i = 0; i < c->impl_count; i++) {
        if (!c->impls[i].run)
            continue;
        double v = c->impls[i].run(probe);
        if (valid_value(v))
            v = c->impls[i].run(probe);
        if (!valid_value(v)) {
            failed[i] = true;
            continue;
        }
        if (v > worst)
            worst = v;
    }
    double budget = (double)(opt->quick ? QUICK_ROUND_BUDGET_NS : ROUND_BUDGET_NS);
    if (worst > 0.0 && budget / worst < (double)iters) {
        uint64_t fit = (uint64_t)(budget / worst);
        iters = fit > probe ? fit : probe;
    }
    return iters;
}

/* Whether the progress line can be rewritten in place: stderr is a
 * terminal that the results on stdout do not share. */
static bool progress_in_place(void)
{
    return isatty(STDERR_FILENO) && !isatty(STDOUT_FILENO);
}

/* The progress line: which case starts, how many are done, and the time
 * so far. Rewritten in place when it can be, one line per case otherwise
 * (a CI log, or a table on the same terminal). */
static void progress(const bench_case_t *c)
{
    double elapsed = (double)(bench_now_ns() - progress_start_ns) / 1e9;
    bool tty = progress_in_place();
    fprintf(stderr, "%smoirai-bench: [%zu/%zu] %s/%s (%zu implementations), %.0f s so far%s",
            tty ? "\r\033[K" : "", progress_done + 1, progress_total, c->suite, c->name,
            c->impl_count, elapsed, tty ? "" : "\n");
    fflush(stderr);
    progress_done++;
}

/* The progress line's last word, once every case ran. */
static void progress_end(void)
{
    double elapsed = (double)(bench_now_ns() - progress_start_ns) / 1e9;
    fprintf(stderr, "%smoirai-bench: %zu cases in %.0f s\n", progress_in_place() ? "\r\033[K" : "",
            progress_done, elapsed);
}

/* Keeps an outcome for --plot; without memory for it, the plot is dropped
 * with a message rather than drawn incomplete. */
static bool plot_ok = true;
static void record(const options_t *opt, const bench_case_t *c, size_t i, plot_outcome_t outcome,
                   double value, const char *why)
{
    if (opt->plot && plot_ok && plot_record(c, i, outcome, value, why) < 0) {
        fprintf(stderr, "moirai-bench: out of memory; no plot will be written\n");
        plot_ok = false;
    }
}

/* One implementation's result in one measurement of a case. */
typedef struct outcome {
    bool failed;
    double median, min, max; /* valid when built and not failed */
} outcome_t;

/* Measures one case: calibration, a warm-up round, then `rounds` rounds in
 * which every built implementation runs once, the starting one rotating so
 * that no implementation always runs first (after the other's cache and
 * frequency effects). Fills out[i] for each implementation and `*iters`
 * with the count per round. Returns 0, or -1 when out of memory. */
static int measure_case(const options_t *opt, const bench_case_t *c, outcome_t *out,
                        uint64_t *iters_out)
{
    size_t n = c->impl_count;
    int rounds = opt->rounds;
    uint64_t iters = opt->quick ? c->quick_iters : c->iters;
    double *values = calloc(n * (size_t)rounds, sizeof(double));
    bool *failed = calloc(n, sizeof(bool));
    if (!values || !failed) {
        fprintf(stderr, "moirai-bench: out of memory\n");
        free(values);
        free(failed);
        return -1;
    }
    bool recalibrate = !strcmp(c->metric, "ns_per_op");
    double budget = (double)(opt->quick ? QUICK_ROUND_BUDGET_NS : ROUND_BUDGET_NS);
    double warm_worst = 0.0;
    if (recalibrate)
        iters = calibrate(opt, c, iters, failed);

    for (int r = -1; r < rounds; r++) {
        for (size_t k = 0; k < n; k++) {
            size_t i = (k + (size_t)(r < 0 ? 0 : r)) % n;
            const bench_impl_t *impl = &c->impls[i];
            if (!impl->run || failed[i])
                continue;
            double v = impl->run(iters);
            if (!valid_value(v)) {
                failed[i] = true;
                continue;
            }
            if (r >= 0)
                values[i * (size_t)rounds + (size_t)r] = v;
            else if (v > warm_worst)
                warm_worst = v;
        }
        /* The probe can mislead: some cases switch between a fast and a
         * slow regime (threads sharing one CPU, say). If the warm-up round
         * shows rounds would overrun the budget by half, shrink them. */
        if (r < 0 && recalibrate && warm_worst * (double)iters > 1.5 * budget) {
            uint64_t fit = (uint64_t)(budget / warm_worst);
            iters = fit > 1 ? fit : 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        double *v = &values[i * (size_t)rounds];
        out[i] = (outcome_t){.failed = failed[i]};
        if (c->impls[i].run && !failed[i]) {
            out[i].median = median(v, rounds);
            out[i].min = v[0];
            out[i].max = v[rounds - 1];
        }
    }
    *iters_out = iters;
    free(values);
    free(failed);
    return 0;
}

/* Prints one case's results (and records them for --plot). Returns 0, or
 * -1 if an implementation failed. */
static int print_case(const options_t *opt, const bench_case_t *c, const outcome_t *out,
                      uint64_t iters)
{
    int status = 0;
    for (size_t i = 0; i < c->impl_count; i++) {
        const bench_impl_t *impl = &c->impls[i];
        if (!impl->run) {
            record(opt, c, i, PLOT_MISSING, 0.0, impl->missing ? impl->missing : "not built");
            if (opt->json) {
                json_head(c, impl->impl);
                printf(",\"missing\":");
                json_string(impl->missing ? impl->missing : "not built");
                printf("}\n");
            } else {
                printf("%-6s %-*s %-*s %-10s missing: %s\n", c->suite, case_width, c->name,
                       impl_width, impl->impl, c->metric,
                       impl->missing ? impl->missing : "not built");
            }
            continue;
        }
        if (out[i].failed) {
            status = -1;
            record(opt, c, i, PLOT_FAILED, 0.0, NULL);
            fprintf(stderr, "moirai-bench: %s/%s: implementation '%s' failed\n", c->suite, c->name,
                    impl->impl);
            if (opt->json) {
                json_head(c, impl->impl);
                printf(",\"failed\":");
                json_string("the run reported an error or a wrong result");
                printf("}\n");
            } else {
                printf("%-6s %-*s %-*s %-10s FAILED (see stderr)\n", c->suite, case_width, c->name,
                       impl_width, impl->impl, c->metric);
            }
            continue;
        }
        double med = out[i].median;
        record(opt, c, i, PLOT_MEASURED, med, NULL);
        if (opt->json) {
            json_head(c, impl->impl);
            printf(",\"value\":%.6g}\n", med);
        } else {
            printf("%-6s %-*s %-*s %-10s %12.6g %12.6g %12.6g", c->suite, case_width, c->name,
                   impl_width, impl->impl, c->metric, med, out[i].min, out[i].max);
            if (i > 0 && c->impls[0].run && !out[0].failed && med > 0.0)
                printf(" %8.2f", out[0].median / med);
            else
                printf(" %8s", "");
            printf(" %10llu\n", (unsigned long long)iters);
        }
    }
    fflush(stdout);
    return status;
}

/* The ratio Moirai / impl i of one measurement, or NAN when either side
 * did not run. */
static double ratio_of(const bench_case_t *c, const outcome_t *out, size_t i)
{
    if (!c->impls[0].run || out[0].failed || !c->impls[i].run || out[i].failed ||
        !(out[i].median > 0.0))
        return NAN;
    return out[0].median / out[i].median;
}

/* Counts for the closing line of --baseline. */
static unsigned baseline_compared, baseline_warned, baseline_regressed;

/* Compares the case's ratios with the baseline (and widens it with
 * --write-baseline). A ratio beyond the fail factor is measured twice more
 * and judged on the median of the three, so one noisy measurement cannot
 * fail a run. Returns 1 when a ratio regressed, 0 when none did, -1 when
 * out of memory. */
static int judge_case(const options_t *opt, const bench_case_t *c, const outcome_t *out)
{
    int regressed = 0;
    for (size_t i = 1; i < c->impl_count; i++) {
        const char *impl = c->impls[i].impl;
        double ratio = ratio_of(c, out, i), worse;
        if (isnan(ratio))
            continue;
        if (opt->write_baseline && baseline_update(c, impl, ratio) < 0) {
            fprintf(stderr, "moirai-bench: out of memory\n");
            return -1;
        }
        if (!opt->baseline)
            continue;
        baseline_verdict_t verdict = baseline_judge(c, impl, ratio, &worse);
        baseline_compared += worse > 0.0;
        if (verdict == BASELINE_SUSPECT) {
            double ratios[3] = {ratio, NAN, NAN};
            outcome_t *again = calloc(c->impl_count, sizeof(*again));
            uint64_t iters;
            for (int k = 1; k < 3 && again; k++) {
                if (measure_case(opt, c, again, &iters) == 0)
                    ratios[k] = ratio_of(c, again, i);
            }
            free(again);
            if (isnan(ratios[1]) || isnan(ratios[2])) {
                fprintf(stderr, "moirai-bench: %s/%s vs %s: could not measure again\n", c->suite,
                        c->name, impl);
                return -1;
            }
            double first = ratio;
            ratio = median(ratios, 3);
            verdict = baseline_judge(c, impl, ratio, &worse);
            if (verdict == BASELINE_SUSPECT) {
                baseline_regressed++;
                regressed = 1;
                fprintf(stderr,
                        "moirai-bench: REGRESSION %s/%s vs %s: ratio %.3g (median of three "
                        "measurements) is %.2fx the baseline's worst; fail factor %.1f\n",
                        c->suite, c->name, impl, ratio, worse, BASELINE_FAIL_FACTOR);
                continue;
            }
            fprintf(stderr,
                    "moirai-bench: %s/%s vs %s: ratio %.3g was beyond the fail factor, "
                    "measured twice more: median %.3g\n",
                    c->suite, c->name, impl, first, ratio);
        }
        if (verdict != BASELINE_FINE) {
            baseline_warned++;
            fprintf(stderr,
                    "moirai-bench: worse %s/%s vs %s: ratio %.3g is %.2fx the baseline's "
                    "worst (warn factor %.1f, not a failure)\n",
                    c->suite, c->name, impl, ratio, worse, BASELINE_WARN_FACTOR);
        }
    }
    return regressed;
}

/* Runs one case: measures, prints, and judges it against the baseline.
 * Returns 0, -1 if an implementation failed (or memory ran out), 1 if a
 * ratio regressed. */
static int run_case(const options_t *opt, const bench_case_t *c)
{
    outcome_t *out = calloc(c->impl_count, sizeof(*out));
    uint64_t iters;
    progress(c);
    if (!out || measure_case(opt, c, out, &iters) < 0) {
        free(out);
        return -1;
    }
    int status = print_case(opt, c, out, iters);
    int judged = judge_case(opt, c, out);
    free(out);
    return status < 0 || judged < 0 ? -1 : judged;
}

static void list_cases(void)
{
    for (size_t s = 0; s < SUITE_COUNT; s++) {
        size_t count = 0;
        const bench_case_t *cases = suites[s].cases(&count);
        printf("%s\n", suites[s].name);
        for (size_t c = 0; c < count; c++) {
            printf("  %-28s %-10s", cases[c].name, cases[c].metric);
            for (size_t i = 0; i < cases[c].impl_count; i++) {
                const bench_impl_t *impl = &cases[c].impls[i];
                if (impl->run)
                    printf(" %s", impl->impl);
                else
                    printf(" %s (missing: %s)", impl->impl,
                           impl->missing ? impl->missing : "not built");
            }
            printf("\n");
        }
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], BENCH_CHILD_FLAG))
        return bench_child_main(argc, argv);
    options_t opt = {0};
    if (parse_options(argc, argv, &opt) < 0)
        return 2;
    if (opt.list) {
        list_cases();
        return 0;
    }

    /* First pass: check the filters match something and size the columns,
     * so a typo fails at once instead of after a long run. */
    size_t matched = 0;
    bool suite_known = !opt.suite;
    for (size_t s = 0; s < SUITE_COUNT; s++) {
        size_t count = 0;
        const bench_case_t *cases = suites[s].cases(&count);
        if (opt.suite && !strcmp(opt.suite, suites[s].name))
            suite_known = true;
        for (size_t c = 0; c < count; c++) {
            if (!selected(&opt, &cases[c]))
                continue;
            matched++;
            int w = (int)strlen(cases[c].name);
            if (w > case_width)
                case_width = w;
            for (size_t i = 0; i < cases[c].impl_count; i++) {
                w = (int)strlen(cases[c].impls[i].impl);
                if (w > impl_width)
                    impl_width = w;
            }
        }
    }
    if (!suite_known) {
        fprintf(stderr, "moirai-bench: no suite '%s' (try --list)\n", opt.suite);
        return 2;
    }
    if (matched == 0) {
        fprintf(stderr, "moirai-bench: no case matches%s%s%s%s (try --list)\n",
                opt.suite ? " suite " : "", opt.suite ? opt.suite : "", opt.name ? " case " : "",
                opt.name ? opt.name : "");
        return 2;
    }

    /* A plot that cannot be written fails now, not after the run. */
    if (opt.plot) {
        FILE *f = fopen(opt.plot, "w");
        if (!f) {
            fprintf(stderr, "moirai-bench: cannot write %s: %s\n", opt.plot, strerror(errno));
            return 2;
        }
        fclose(f);
    }

    /* Baselines are read before the run, so a malformed file fails at once.
     * --write-baseline reads its files first to widen their bands; judging
     * and widening in one run would judge against half-widened bands. */
    if (opt.baseline && opt.write_baseline) {
        fprintf(stderr, "moirai-bench: --baseline and --write-baseline do not combine\n");
        return 2;
    }
    const char *names[SUITE_COUNT];
    for (size_t s = 0; s < SUITE_COUNT; s++)
        names[s] = suites[s].name;
    if (opt.baseline && baseline_load(opt.baseline, names, SUITE_COUNT) < 0)
        return 2;
    if (opt.write_baseline && baseline_load(opt.write_baseline, names, SUITE_COUNT) < 0)
        return 2;

    if (!opt.json)
        table_header(&opt);
    progress_total = matched;
    progress_start_ns = bench_now_ns();
    int status = 0;
    bool regressed = false;
    for (size_t s = 0; s < SUITE_COUNT; s++) {
        size_t count = 0;
        const bench_case_t *cases = suites[s].cases(&count);
        for (size_t c = 0; c < count; c++) {
            if (!selected(&opt, &cases[c]))
                continue;
            int rc = run_case(&opt, &cases[c]);
            if (rc < 0)
                status = 1;
            else if (rc > 0)
                regressed = true;
        }
    }
    progress_end();
    if (opt.baseline)
        fprintf(stderr,
                "moirai-bench: baseline %s: %u ratios compared, %u worse beyond the warn "
                "factor, %u regressed\n",
                opt.baseline, baseline_compared, baseline_warned, baseline_regressed);
    if (opt.write_baseline && baseline_write(opt.write_baseline) < 0)
        status = 1;
    baseline_free();
    if (opt.plot) {
        char subtitle[256];
        time_t now = time(NULL);
        struct tm tm;
        char when[32] = "";
        if (localtime_r(&now, &tm))
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        snprintf(subtitle, sizeof(subtitle),
                 "%s; %ld CPUs; medians of %d interleaved rounds per implementation%s%s%s%s%s",
                 when, cpus, opt.rounds, opt.quick ? "; --quick" : "", opt.suite ? "; suite " : "",
                 opt.suite ? opt.suite : "", opt.name ? "; case " : "", opt.name ? opt.name : "");
        if (!plot_ok || plot_write(opt.plot, subtitle) < 0)
            status = 1;
        else
            fprintf(stderr, "moirai-bench: plot written to %s\n", opt.plot);
    }
    return status ? status : regressed ? 3 : 0;
}
