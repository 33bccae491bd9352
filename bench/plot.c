/* moirai-bench --plot: see plot.h. */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One recorded outcome. */
typedef struct entry {
    char *suite, *name, *metric, *impl, *why;
    size_t impl_index;
    plot_outcome_t outcome;
    double value;
} entry_t;

static entry_t *entries;
static size_t entry_count, entry_cap;

static char *copy(const char *s)
{
    return s ? strdup(s) : NULL;
}

int plot_record(const bench_case_t *c, size_t impl, plot_outcome_t outcome, double value,
                const char *why)
{
    if (entry_count == entry_cap) {
        size_t cap = entry_cap ? 2 * entry_cap : 64;
        entry_t *grown = realloc(entries, cap * sizeof(*grown));
        if (!grown)
            return -1;
        entries = grown;
        entry_cap = cap;
    }
    entry_t *e = &entries[entry_count];
    *e = (entry_t){copy(c->suite), copy(c->name), copy(c->metric), copy(c->impls[impl].impl),
                   copy(why),      impl,          outcome,         value};
    if (!e->suite || !e->name || !e->metric || !e->impl || (why && !e->why))
        return -1;
    entry_count++;
    return 0;
}

/* One row of the chart: a peer of a case, against Moirai. */
typedef struct row {
    const entry_t *moirai, *peer;
    double ratio; /* NAN when there is nothing to draw */
    const char *note;
} row_t;

/* Writes `s` escaped for SVG text, cut to `max` characters. */
static void xml_text(FILE *f, const char *s, size_t max)
{
    size_t n = 0;
    for (; *s && n < max; s++, n++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
    if (*s)
        fputs("...", f);
}

/* Layout, in SVG user units (pixels). */
enum {
    WIDTH = 1000,
    LABEL_X = 10,    /* left edge of the row labels */
    AXIS_LEFT = 430, /* the plot area */
    AXIS_RIGHT = 900,
    TOP = 96, /* first row's top */
    ROW_H = 18,
    SUITE_H = 26, /* a suite's heading */
};

int plot_write(const char *path, const char *subtitle)
{
    /* Rows: for each case, its Moirai entry and then one row per peer. */
    row_t *rows = calloc(entry_count ? entry_count : 1, sizeof(*rows));
    if (!rows) {
        fprintf(stderr, "moirai-bench: out of memory for the plot\n");
        return -1;
    }
    size_t row_count = 0, faster = 0, misses = 0;
    double lo = 0.5, hi = 2.0; /* the axis covers at least [0.5, 2] */
    const entry_t *moirai = NULL;
    for (size_t i = 0; i < entry_count; i++) {
        const entry_t *e = &entries[i];
        if (e->impl_index == 0) {
            moirai = e;
            continue;
        }
        if (!moirai || strcmp(moirai->suite, e->suite) || strcmp(moirai->name, e->name))
            continue; /* cannot happen: the runner records Moirai first */
        row_t *r = &rows[row_count++];
        r->moirai = moirai;
        r->peer = e;
        r->ratio = NAN;
        if (e->outcome == PLOT_MISSING)
            r->note = "missing";
        else if (e->outcome == PLOT_FAILED)
            r->note = "peer FAILED";
        else if (moirai->outcome == PLOT_FAILED)
            r->note = "Moirai FAILED";
        else if (moirai->outcome != PLOT_MEASURED || !(e->value > 0.0))
            r->note = "no ratio";
        else {
            r->ratio = moirai->value / e->value;
            if (r->ratio < lo)
                lo = r->ratio;
            if (r->ratio > hi)
                hi = r->ratio;
            if (r->ratio < 1.0)
                faster++;
            else if (r->ratio > 1.0)
                misses++;
        }
    }
    /* Whole decades (or halves) around the data, symmetric enough to read. */
    double llo = floor(log10(lo) * 2.0) / 2.0, lhi = ceil(log10(hi) * 2.0) / 2.0;
    size_t suites = 0;
    for (size_t i = 0; i < row_count; i++)
        suites += i == 0 || strcmp(rows[i].moirai->suite, rows[i - 1].moirai->suite);
    int height = TOP + (int)suites * SUITE_H + (int)row_count * ROW_H + 60;

    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "moirai-bench: cannot write %s: %s\n", path, strerror(errno));
        free(rows);
        return -1;
    }
#define X(ratio) (AXIS_LEFT + (AXIS_RIGHT - AXIS_LEFT) * (log10(ratio) - llo) / (lhi - llo))
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            WIDTH, height, WIDTH, height);
    fprintf(f,
            "<text x=\"%d\" y=\"24\" font-size=\"18\" font-weight=\"bold\">moirai-bench: "
            "Moirai / peer, medians (every metric: lower is better)</text>\n",
            LABEL_X);
    fprintf(f, "<text x=\"%d\" y=\"44\" fill=\"#444\">", LABEL_X);
    xml_text(f, subtitle ? subtitle : "", 200);
    fprintf(f, "</text>\n");
    fprintf(f,
            "<text x=\"%d\" y=\"64\"><tspan fill=\"#1a7f37\">&#9632; Moirai faster "
            "(ratio &lt; 1): %zu</tspan>   <tspan fill=\"#cf222e\">&#9632; Moirai slower, a "
            "miss (ratio &gt; 1): %zu</tspan>   <tspan fill=\"#666\">of %zu comparisons; "
            "log scale</tspan></text>\n",
            LABEL_X, faster, misses, row_count);

    /* Grid: lines at 1, 2 and 5 times each power of ten in range,
     * labelled; the 1.0 line in black. */
    int grid_top = TOP - 10, grid_bottom = height - 40;
    for (int d = (int)floor(llo); d <= (int)ceil(lhi); d++) {
        static const double steps[] = {1.0, 2.0, 5.0};
        for (int k = 0; k < 3; k++) {
            double v = steps[k] * pow(10.0, d), lv = log10(v);
            if (lv < llo - 1e-9 || lv > lhi + 1e-9)
                continue;
            double x = X(v);
            bool one = d == 0 && k == 0;
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"%s\" "
                    "stroke-width=\"%s\"/>\n",
                    x, grid_top, x, grid_bottom,
                    one ? "#000"
                    : k ? "#eee"
                        : "#ccc",
                    one ? "2" : "1");
            /* Over a wide range only the powers of ten are labelled, so
             * the labels do not run into each other. */
            if (k == 0 || lhi - llo <= 2.5)
                fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\"%s>%g</text>\n", x,
                        grid_bottom + 16, one ? " font-weight=\"bold\"" : "", v);
        }
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#444\">ratio = Moirai "
            "median / peer median</text>\n",
            (AXIS_LEFT + AXIS_RIGHT) / 2.0, grid_bottom + 34);

    int y = TOP;
    for (size_t i = 0; i < row_count; i++) {
        const row_t *r = &rows[i];
        if (i == 0 || strcmp(r->moirai->suite, rows[i - 1].moirai->suite)) {
            fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">suite ",
                    LABEL_X, y + 18);
            xml_text(f, r->moirai->suite, 40);
            fprintf(f, "</text>\n");
            y += SUITE_H;
        }
        if (i % 2)
            fprintf(f, "<rect x=\"0\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#f6f8fa\"/>\n", y,
                    WIDTH, ROW_H);
        fprintf(f, "<text x=\"%d\" y=\"%d\">", LABEL_X + 10, y + 13);
        xml_text(f, r->moirai->name, 34);
        fprintf(f, " <tspan fill=\"#666\">vs</tspan> ");
        xml_text(f, r->peer->impl, 14);
        fprintf(f, "</text>\n");
        if (isnan(r->ratio)) {
            fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"%s\" font-style=\"italic\">", AXIS_LEFT + 4,
                    y + 13, strstr(r->note, "FAILED") ? "#cf222e" : "#888");
            xml_text(f, r->note, 20);
            if (r->peer->why) {
                fputs(": ", f);
                xml_text(f, r->peer->why, 70);
            }
            fprintf(f, "</text>\n");
        } else {
            double x1 = X(1.0), x2 = X(r->ratio);
            bool miss = r->ratio > 1.0;
            fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n",
                    fmin(x1, x2), y + 3, fmax(fabs(x2 - x1), 1.0), ROW_H - 6,
                    miss ? "#cf222e" : "#1a7f37");
            /* The value goes right of the bar's right end: past a miss,
             * or just right of the 1.0 line for a win. */
            /* Two decimals, or two significant digits below 0.1. */
            fprintf(f,
                    r->ratio < 0.1 ? "<text x=\"%.1f\" y=\"%d\"%s>%.2g</text>\n"
                                   : "<text x=\"%.1f\" y=\"%d\"%s>%.2f</text>\n",
                    fmax(x1, x2) + 4, y + 13,
                    miss ? " fill=\"#cf222e\" font-weight=\"bold\"" : " fill=\"#1a7f37\"",
                    r->ratio);
        }
        y += ROW_H;
    }
#undef X
    fprintf(f, "</svg>\n");
    free(rows);
    if (fclose(f) != 0) {
        fprintf(stderr, "moirai-bench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}
