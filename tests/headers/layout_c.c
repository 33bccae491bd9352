/* The C view of the layouts listed in layout.h, compiled by the C compiler
 * into the same program as the C++ view it is compared with. */
#include <stddef.h>

#include <moirai/core.h>
#include <moirai/async.h>
#include <moirai/sched/job.h>
#include <moirai/sync.h>

#include "layout.h"

#define C_LAYOUT(type, field)                                                                      \
    {#type "." #field, sizeof(type), _Alignof(type), offsetof(type, field)},

static const moirai_test_layout_t layouts[] = {MOIRAI_TEST_LAYOUTS(C_LAYOUT)};

const moirai_test_layout_t *moirai_test_c_layouts(size_t *count)
{
    *count = sizeof(layouts) / sizeof(layouts[0]);
    return layouts;
}
