/* Fake sysfs trees for the topology and NUMA tests: a scratch directory
 * that moirai_topology_reload() reads instead of /sys. Header-only. */
#ifndef MOIRAI_TEST_FAKE_SYSFS_H
#define MOIRAI_TEST_FAKE_SYSFS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Writes `content` to <root>/<path>, creating directories on the way. */
__attribute__((format(printf, 3, 4))) static inline void
fake_sysfs_put(const char *root, const char *content, const char *fmt, ...)
{
    char path[PATH_MAX];
    size_t rl = strlen(root);
    va_list ap;
    FILE *f;

    memcpy(path, root, rl);
    path[rl] = '/';
    va_start(ap, fmt);
    vsnprintf(path + rl + 1, sizeof(path) - rl - 1, fmt, ap);
    va_end(ap);
    for (char *p = path + rl + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            cr_assert(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s", path);
            *p = '/';
        }
    }
    f = fopen(path, "w");
    cr_assert_not_null(f, "create %s", path);
    fputs(content, f);
    fclose(f);
}

static int fake_sysfs_remove_entry(const char *path, const struct stat *sb, int flag,
                                   struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Removes the tree under `root` (and `root` itself). */
static inline void fake_sysfs_remove(const char *root)
{
    nftw(root, fake_sysfs_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
