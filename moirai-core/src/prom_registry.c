/* The metrics registry: a list of collectors, each an object with the
 * callback that writes its metrics, run in the order added (see prom.h).
 *
 * One mutex guards the list and is held through a whole write, so that a
 * remove returning means its collector is not running and never will
 * again: the caller may then destroy the object. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include <moirai/core/alloc.h>
#include <moirai/core/prom.h>

typedef struct entry {
    char *name;
    moirai_metrics_collect_cb collect;
    void *arg;
} entry_t;

struct moirai_metrics_registry {
    pthread_mutex_t lock;
    entry_t *entries; /* under lock */
    size_t n, cap;    /* under lock */
};

int moirai_metrics_registry_create(moirai_metrics_registry_t **out)
{
    if (!out)
        return -EINVAL;
    moirai_metrics_registry_t *reg = moirai_calloc(1, sizeof(*reg));
    if (!reg)
        return -ENOMEM;
    pthread_mutex_init(&reg->lock, NULL);
    *out = reg;
    return 0;
}

void moirai_metrics_registry_destroy(moirai_metrics_registry_t *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++)
        moirai_free(reg->entries[i].name);
    moirai_free(reg->entries);
    pthread_mutex_destroy(&reg->lock);
    moirai_free(reg);
}

int moirai_metrics_registry_add(moirai_metrics_registry_t *reg, const char *name,
                                moirai_metrics_collect_cb collect, void *arg)
{
    if (!reg || !name || !collect)
        return -EINVAL;
    /* Copied before taking the lock: the allocation may be slow. */
    size_t len = strlen(name) + 1;
    char *copy = moirai_malloc(len);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, name, len);
    int err = 0;
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->n && !err; i++) {
        entry_t *e = &reg->entries[i];
        if (e->collect == collect && (e->arg == arg || strcmp(e->name, name) == 0))
            err = -EEXIST;
    }
    if (!err && reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 8;
        entry_t *es = moirai_realloc(reg->entries, cap * sizeof(*es));
        if (es) {
            reg->entries = es;
            reg->cap = cap;
        } else {
            err = -ENOMEM;
        }
    }
    if (!err)
        reg->entries[reg->n++] = (entry_t){copy, collect, arg};
    pthread_mutex_unlock(&reg->lock);
    if (err)
        moirai_free(copy);
    return err;
}

int moirai_metrics_registry_remove(moirai_metrics_registry_t *reg,
                                   moirai_metrics_collect_cb collect, void *arg)
{
    if (!reg || !collect)
        return -EINVAL;
    char *name = NULL;
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->n; i++) {
        if (reg->entries[i].collect == collect && reg->entries[i].arg == arg) {
            name = reg->entries[i].name;
            /* Shifted, not swapped with the last, to keep the order in
             * which collectors run (and families first appear). */
            memmove(&reg->entries[i], &reg->entries[i + 1],
                    (reg->n - i - 1) * sizeof(reg->entries[0]));
            reg->n--;
            break;
        }
    }
    pthread_mutex_unlock(&reg->lock);
    if (!name)
        return -ENOENT;
    moirai_free(name);
    return 0;
}

int moirai_metrics_registry_write(moirai_metrics_registry_t *reg, moirai_prom_writer_t *w)
{
    if (!reg || !w)
        return -EINVAL;
    moirai_prom_mark_t mark = moirai_prom_writer_mark(w);
    int err = 0;
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->n && !err; i++)
        err = reg->entries[i].collect(reg->entries[i].arg, w, reg->entries[i].name);
    pthread_mutex_unlock(&reg->lock);
    if (err)
        moirai_prom_writer_rollback(w, mark);
    return err;
}
