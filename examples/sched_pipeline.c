/* moirai-sched: a three-stage pipeline with moirai_pipeline_run().
 *
 * A serial source reads "records" (here: numbers 1..N), a parallel stage
 * does the expensive part (hashing each record many times), and a serial
 * in-order sink writes the results, seeing them in the order the source
 * produced them however the parallel stage interleaved. At most 16 records
 * are in flight, so memory stays bounded whatever N is. Exits non-zero if
 * the sink saw a record out of order, missed one, or got a wrong hash. */
#include <moirai/core.h>
#include <moirai/sched.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum { RECORDS = 5000, IN_FLIGHT = 16, ROUNDS = 2000 };

typedef struct record {
    uint64_t number;
    uint64_t hash;
} record_t;

static uint64_t mix(uint64_t x)
{
    for (int i = 0; i < ROUNDS; i++) {
        x ^= x >> 33;
        x *= UINT64_C(0xff51afd7ed558ccd);
    }
    return x;
}

/* Source (serial): one record per call, then MOIRAI_PIPELINE_END. */
static int read_record(void *arg, void *in, void **out)
{
    (void)in;
    uint64_t *next = arg;
    if (*next > RECORDS)
        return MOIRAI_PIPELINE_END;
    record_t *r = malloc(sizeof(*r));
    if (r == NULL)
        return -ENOMEM; /* an error stops the pipeline */
    r->number = (*next)++;
    *out = r;
    return 0;
}

/* Parallel: any number of records at once. */
static int hash_record(void *arg, void *in, void **out)
{
    (void)arg;
    record_t *r = in;
    r->hash = mix(r->number);
    *out = r;
    return 0;
}

typedef struct sink {
    uint64_t expected_next; /* touched by the serial sink only */
    uint64_t wrong;
} sink_t;

/* Sink (serial, in order): sees records in the source's order. */
static int write_record(void *arg, void *in, void **out)
{
    (void)out;
    sink_t *s = arg;
    record_t *r = in;
    if (r->number != s->expected_next || r->hash != mix(r->number))
        s->wrong++;
    s->expected_next = r->number + 1;
    free(r);
    return 0;
}

int main(void)
{
    uint64_t next = 1;
    sink_t sink = {1, 0};
    const moirai_pipeline_stage_t stages[] = {
        {MOIRAI_STAGE_SERIAL_IN_ORDER, read_record, &next},
        {MOIRAI_STAGE_PARALLEL, hash_record, NULL},
        {MOIRAI_STAGE_SERIAL_IN_ORDER, write_record, &sink},
    };

    moirai_sched_t *sched;
    if (moirai_sched_create(&sched, NULL) != 0)
        return 1;
    int rc = moirai_pipeline_run(sched, IN_FLIGHT, stages, 3);
    moirai_sched_destroy(sched, MOIRAI_SHUTDOWN_DRAIN);

    printf("pipeline: %s, %llu records written in order, %llu wrong\n", moirai_strerror(rc),
           (unsigned long long)(sink.expected_next - 1), (unsigned long long)sink.wrong);
    return rc == 0 && sink.expected_next == RECORDS + 1 && sink.wrong == 0 ? 0 : 1;
}
