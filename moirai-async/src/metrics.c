/* The fiber runtime's collector for the Prometheus export (see
 * moirai/async/metrics.h): moirai_runtime_stats(), one sample per
 * family. */
#include <errno.h>
#include <stddef.h>

#include <moirai/async/metrics.h>
#include <moirai/async/runtime.h>

typedef struct field {
    const char *name;
    moirai_prom_type_t type;
    const char *help;
    size_t offset;
} field_t;

#define FIELD(name, type, help, member)                                                            \
    {                                                                                              \
        name, type, help, offsetof(moirai_runtime_stats_t, member)                                 \
    }

static const field_t fields[] = {
    FIELD("moirai_runtime_fibers_spawned_total", MOIRAI_PROM_COUNTER, "Fibers accepted by spawn.",
          fibers_spawned),
    FIELD("moirai_runtime_fibers_alive", MOIRAI_PROM_GAUGE, "Fibers spawned and not yet finished.",
          fibers_alive),
    FIELD("moirai_runtime_switches_total", MOIRAI_PROM_COUNTER, "Switches into fibers.", switches),
    FIELD("moirai_runtime_parks_total", MOIRAI_PROM_COUNTER,
          "Times a fiber parked (waits, sleeps).", parks),
    FIELD("moirai_runtime_stacks_mapped", MOIRAI_PROM_GAUGE,
          "Fiber stacks currently mapped, in use or cached.", stacks_mapped),
    FIELD("moirai_runtime_stacks_cached", MOIRAI_PROM_GAUGE,
          "Mapped fiber stacks cached for reuse.", stacks_cached),
    FIELD("moirai_runtime_stack_high_water_bytes", MOIRAI_PROM_GAUGE,
          "Most stack bytes any finished fiber used.", stack_high_water),
    FIELD("moirai_runtime_timers_armed_total", MOIRAI_PROM_COUNTER,
          "Sleeps and deadline parks handed to the reactor.", timers_armed),
    FIELD("moirai_runtime_watchdog_reports_total", MOIRAI_PROM_COUNTER,
          "Reports of the scheduler's watchdog (its workers' sum).", watchdog_reports),
};

int moirai_runtime_metrics_collect(void *runtime, moirai_prom_writer_t *w, const char *name)
{
    if (!runtime || !w || !name)
        return -EINVAL;
    moirai_runtime_stats_t st;
    int err = moirai_runtime_stats(runtime, &st);
    if (err)
        return err;
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    moirai_prom_label_t labels[] = {{"name", name}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && !err; i++) {
        const field_t *f = &fields[i];
        int id = moirai_prom_writer_family(w, f->name, f->type, f->help);
        uint64_t v = *(const uint64_t *)((const char *)&st + f->offset);
        err = id < 0 ? id : moirai_prom_writer_sample_u64(w, id, labels, 1, v);
    }
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}
