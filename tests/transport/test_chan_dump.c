/* Fiber dumps name channel waits (moirai/async/dump.h): a fiber parked in
 * moirai_chan_recv() on an empty channel reads "parked on channel", and
 * one in moirai_chan_select() reads "parked on select" (a fiber's channel
 * select waits through moirai-async's select); both are released by a
 * send and end. The dump goes to open_memstream() and is parsed back. */
#include <criterion/criterion.h>

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <moirai/async.h>
#include <moirai/transport.h>

#include "dump_text.h"
#include "../async/async_test_util.h"

static moirai_chan_t *chan_a;
static moirai_chan_t *chan_b;

static int receiver(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    void *v = NULL;
    return moirai_chan_recv(chan_a, &v);
}

static int selector(void *arg, const moirai_cancel_token_t *cancel, void **result)
{
    (void)arg;
    (void)cancel;
    (void)result;
    void *v = NULL;
    moirai_chan_case_t c = {0};
    c.chan = chan_b;
    c.dir = MOIRAI_CHAN_RECV;
    c.elem = &v;
    int rc = moirai_chan_select(&c, 1);
    return rc == 0 ? 0 : -1;
}

Test(transport_chan_dump, channel_waits_are_named)
{
    moirai_runtime_t *rt = make_runtime(2);
    cr_assert_eq(moirai_chan_create(&chan_a, NULL), 0);
    cr_assert_eq(moirai_chan_create(&chan_b, NULL), 0);
    moirai_fiber_attr_t attr;
    moirai_fiber_attr_init(&attr);
    attr.task.name = "receiver";
    moirai_handle_t *hr = spawn_with_handle(rt, receiver, NULL, &attr);
    attr.task.name = "chan_selector";
    moirai_handle_t *hs = spawn_with_handle(rt, selector, NULL, &attr);
    char line[512];
    for (;;) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        cr_assert_not_null(f);
        cr_assert_eq(moirai_runtime_dump(rt, f, 0), 0);
        fclose(f);
        bool r = dump_find_fiber(text, "receiver", line, sizeof line) &&
                 strstr(line, "parked on ") != NULL;
        bool s = r && dump_find_fiber(text, "chan_selector", line, sizeof line) &&
                 strstr(line, "parked on ") != NULL;
        if (s) {
            cr_assert(dump_find_fiber(text, "receiver", line, sizeof line));
            cr_assert_not_null(strstr(line, "\"receiver\": parked on channel 0x"), "%s", line);
            cr_assert(dump_find_fiber(text, "chan_selector", line, sizeof line));
            cr_assert_not_null(strstr(line, "\"chan_selector\": parked on select 0x"), "%s", line);
            free(text);
            break;
        }
        free(text);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    void *one = (void *)(uintptr_t)1;
    cr_assert_eq(moirai_chan_send(chan_a, &one), 0);
    cr_assert_eq(moirai_chan_send(chan_b, &one), 0);
    cr_assert_eq(join_and_release(hr, NULL), 0);
    cr_assert_eq(join_and_release(hs, NULL), 0);
    cr_assert_eq(moirai_chan_destroy(chan_a), 0);
    cr_assert_eq(moirai_chan_destroy(chan_b), 0);
    drop_runtime(rt);
}
