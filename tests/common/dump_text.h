/* Reading the text of a scheduler or runtime dump in tests: the line that
 * starts with a prefix, and the line of a fiber by name. */
#ifndef MOIRAI_TEST_DUMP_TEXT_H
#define MOIRAI_TEST_DUMP_TEXT_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Copies the line [p, p + len) into `line` (truncated to `cap` - 1). */
static inline void dump_copy_line(const char *p, size_t len, char *line, size_t cap)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(line, p, len);
    line[len] = '\0';
}

/* The first line of `text` that starts with `prefix`, copied into `line`. */
static inline bool dump_find_line(const char *text, const char *prefix, char *line, size_t cap)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (len >= n && strncmp(p, prefix, n) == 0) {
            dump_copy_line(p, len, line, cap);
            return true;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return false;
}

/* The entry of the fiber called `name` (`fiber <id> "<name>": ...`),
 * copied into `line`. */
static inline bool dump_find_fiber(const char *text, const char *name, char *line, size_t cap)
{
    char needle[128];
    snprintf(needle, sizeof needle, "\"%s\": ", name);
    for (const char *p = text; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *hit = strncmp(p, "fiber ", 6) == 0 ? strstr(p, needle) : NULL;
        if (hit != NULL && hit < p + len) {
            dump_copy_line(p, len, line, cap);
            return true;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return false;
}

#endif
