/* moirai-sched: a data-parallel loop with moirai_parallel_for().
 *
 * Applies a function to every element of an array: the range is split
 * into pieces of at least `grain` elements that the workers take on
 * (idle ones steal the larger halves), and the call returns when every
 * piece is done, with the pieces' writes visible to the caller. Exits
 * non-zero if an element was missed or visited twice. */
#include <moirai/core.h>
#include <moirai/sched.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum { N = 1 << 20, GRAIN = 4096 };

typedef struct work {
    const double *in;
    double *out;
    uint8_t *visits;
} work_t;

static void smooth(void *arg, size_t begin, size_t end)
{
    work_t *w = arg;
    for (size_t i = begin; i < end; i++) {
        double left = i > 0 ? w->in[i - 1] : w->in[i];
        double right = i + 1 < N ? w->in[i + 1] : w->in[i];
        w->out[i] = (left + 2 * w->in[i] + right) / 4;
        w->visits[i]++; /* each index belongs to exactly one piece */
    }
}

int main(void)
{
    double *in = malloc(N * sizeof(*in)), *out = malloc(N * sizeof(*out));
    uint8_t *visits = calloc(N, 1);
    if (!in || !out || !visits)
        return 1;
    for (size_t i = 0; i < N; i++)
        in[i] = (double)(i % 17);

    moirai_sched_t *sched;
    if (moirai_sched_create(&sched, NULL) != 0)
        return 1;
    work_t w = {in, out, visits};
    int rc = moirai_parallel_for(sched, 0, N, GRAIN, smooth, &w);
    moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN);

    size_t wrong = 0;
    for (size_t i = 0; i < N; i++) {
        double left = i > 0 ? in[i - 1] : in[i], right = i + 1 < N ? in[i + 1] : in[i];
        wrong += visits[i] != 1 || fabs(out[i] - (left + 2 * in[i] + right) / 4) > 1e-12;
    }
    printf("parallel_for: %d elements in pieces of >= %d: %s, %zu wrong\n", N, GRAIN,
           moirai_strerror(rc), wrong);
    free(in);
    free(out);
    free(visits);
    return rc == 0 && wrong == 0 ? 0 : 1;
}
