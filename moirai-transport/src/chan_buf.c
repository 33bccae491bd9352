/* A channel's element buffer (chan_internal.h): a ring allocated once for
 * a bounded channel, a list of segments for an unbounded one. Callers hold
 * the channel lock. */
#include <errno.h>
#include <string.h>

#include <moirai/core/alloc.h>

#include "chan_internal.h"

/* A segment holds about 4 KiB of elements (at least one): large enough
 * that allocation is rare per element, small enough that an idle channel
 * holds little. */
#define SEG_BYTES 4096

int moirai__chan_buf_init(chan_buf_t *b, size_t elem, size_t cap)
{
    memset(b, 0, sizeof *b);
    b->elem = elem;
    b->cap = cap;
    if (cap == MOIRAI_CHAN_UNBOUNDED) {
        b->seg_elems = SEG_BYTES / elem > 0 ? SEG_BYTES / elem : 1;
        return 0;
    }
    if (cap == 0)
        return 0;
    /* The caller checked cap * elem against MOIRAI_CHAN_BUFFER_MAX. */
    b->ring = moirai_malloc(cap * elem);
    return b->ring != NULL ? 0 : -ENOMEM;
}

void moirai__chan_buf_fini(chan_buf_t *b)
{
    moirai_free(b->ring);
    chan_seg_t *s = b->head_seg;
    while (s != NULL) {
        chan_seg_t *next = s->next;
        moirai_free(s);
        s = next;
    }
    moirai_free(b->spare);
    memset(b, 0, sizeof *b);
}

bool moirai__chan_buf_has_room(const chan_buf_t *b)
{
    return b->len < b->cap;
}

int moirai__chan_buf_push(chan_buf_t *b, const void *elem)
{
    if (b->cap != MOIRAI_CHAN_UNBOUNDED) {
        size_t slot = b->head + b->len;
        if (slot >= b->cap)
            slot -= b->cap;
        memcpy(b->ring + slot * b->elem, elem, b->elem);
        b->len++;
        return 0;
    }
    if (b->tail_seg == NULL || b->tail_idx == b->seg_elems) {
        /* A new segment, from the spare kept by the last pop that emptied
         * one, else allocated. On failure nothing has changed. */
        chan_seg_t *s = b->spare;
        if (s != NULL)
            b->spare = NULL;
        else if ((s = moirai_malloc(sizeof *s + b->seg_elems * b->elem)) == NULL)
            return -ENOMEM;
        s->next = NULL;
        if (b->tail_seg != NULL)
            b->tail_seg->next = s;
        else {
            b->head_seg = s;
            b->head = 0;
        }
        b->tail_seg = s;
        b->tail_idx = 0;
    }
    memcpy(b->tail_seg->data + b->tail_idx * b->elem, elem, b->elem);
    b->tail_idx++;
    b->len++;
    return 0;
}

void moirai__chan_buf_pop(chan_buf_t *b, void *out)
{
    if (b->cap != MOIRAI_CHAN_UNBOUNDED) {
        if (out != NULL)
            memcpy(out, b->ring + b->head * b->elem, b->elem);
        if (++b->head == b->cap)
            b->head = 0;
        b->len--;
        return;
    }
    chan_seg_t *s = b->head_seg;
    if (out != NULL)
        memcpy(out, s->data + b->head * b->elem, b->elem);
    b->head++;
    b->len--;
    if (s == b->tail_seg && b->head == b->tail_idx) {
        /* Empty: rewind the only segment instead of freeing it. */
        b->head = 0;
        b->tail_idx = 0;
    } else if (b->head == b->seg_elems) {
        b->head_seg = s->next;
        b->head = 0;
        /* Keep one segment for the next growth, free the rest. */
        if (b->spare == NULL)
            b->spare = s;
        else
            moirai_free(s);
    }
}
