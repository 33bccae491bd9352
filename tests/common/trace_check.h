/* A checker for the trace recorder's output, for tests: a minimal JSON
 * parser (objects, arrays, strings with escapes, numbers, true, false,
 * null; strict, so malformed output fails) and a check of the Chrome
 * trace-event rules the recorder promises.
 *
 *     trace_check_t c;
 *     const char *why = trace_check(text, &c);   // NULL: well formed
 *
 * The rules: the document is an object whose "traceEvents" is an array of
 * objects; every event has a one-letter "ph" and numeric "pid" and "tid";
 * every event but metadata ("M") has a numeric "ts"; B and i events have
 * string "name" and "cat"; M events have "name" and args.name; on each
 * tid, timestamps never decrease, and every E closes an open B (none left
 * open at the end); "otherData" holds numeric "recorded" and "dropped".
 * Header-only (static functions), using the C library's allocator. */
#ifndef MOIRAI_TEST_TRACE_CHECK_H
#define MOIRAI_TEST_TRACE_CHECK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUM, JSON_STR, JSON_ARR, JSON_OBJ } json_type_t;

typedef struct json {
    json_type_t type;
    double num;          /* JSON_NUM, JSON_BOOL (0 or 1) */
    char *str;           /* JSON_STR: decoded, NUL-terminated */
    size_t len;          /* JSON_ARR, JSON_OBJ: members */
    struct json **items; /* JSON_ARR, JSON_OBJ: values */
    char **keys;         /* JSON_OBJ: keys */
} json_t;

typedef struct json_parser {
    const char *p;
    const char *err;
} json_parser_t;

static void json_free(json_t *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->len; i++) {
        json_free(j->items[i]);
        if (j->keys != NULL)
            free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->str);
    free(j);
}

static void json_ws(json_parser_t *ps)
{
    while (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t')
        ps->p++;
}

static json_t *json_value(json_parser_t *ps);

/* A string at ps->p (which is at the opening quote). Decodes \uXXXX
 * below 0x80 only (all the recorder writes); others are an error. */
static char *json_string(json_parser_t *ps)
{
    if (*ps->p != '"') {
        ps->err = "expected a string";
        return NULL;
    }
    ps->p++;
    size_t cap = 16, n = 0;
    char *s = malloc(cap);
    for (;;) {
        char c = *ps->p++;
        if (c == '\0' || (unsigned char)c < 0x20) {
            ps->err = "unterminated string or raw control character";
            free(s);
            return NULL;
        }
        if (c == '"')
            break;
        if (c == '\\') {
            char e = *ps->p++;
            switch (e) {
            case '"':
                c = '"';
                break;
            case '\\':
                c = '\\';
                break;
            case '/':
                c = '/';
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'u': {
                unsigned v = 0;
                for (int k = 0; k < 4; k++) {
                    char h = *ps->p++;
                    v <<= 4;
                    if (h >= '0' && h <= '9')
                        v |= (unsigned)(h - '0');
                    else if (h >= 'a' && h <= 'f')
                        v |= (unsigned)(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F')
                        v |= (unsigned)(h - 'A' + 10);
                    else {
                        ps->err = "bad \\u escape";
                        free(s);
                        return NULL;
                    }
                }
                if (v >= 0x80) {
                    ps->err = "\\u escape beyond ASCII (not expected)";
                    free(s);
                    return NULL;
                }
                c = (char)v;
                break;
            }
            default:
                ps->err = "bad escape";
                free(s);
                return NULL;
            }
        }
        if (n + 2 > cap)
            s = realloc(s, cap *= 2);
        s[n++] = c;
    }
    s[n] = '\0';
    return s;
}

static json_t *json_new(json_type_t t)
{
    json_t *j = calloc(1, sizeof *j);
    j->type = t;
    return j;
}

static void json_push(json_t *j, char *key, json_t *v)
{
    j->items = realloc(j->items, (j->len + 1) * sizeof *j->items);
    if (j->type == JSON_OBJ) {
        j->keys = realloc(j->keys, (j->len + 1) * sizeof *j->keys);
        j->keys[j->len] = key;
    }
    j->items[j->len++] = v;
}

static json_t *json_value(json_parser_t *ps)
{
    json_ws(ps);
    char c = *ps->p;
    if (c == '{' || c == '[') {
        bool obj = c == '{';
        json_t *j = json_new(obj ? JSON_OBJ : JSON_ARR);
        ps->p++;
        json_ws(ps);
        if (*ps->p == (obj ? '}' : ']')) {
            ps->p++;
            return j;
        }
        for (;;) {
            char *key = NULL;
            if (obj) {
                json_ws(ps);
                key = json_string(ps);
                if (key == NULL)
                    goto fail;
                json_ws(ps);
                if (*ps->p++ != ':') {
                    free(key);
                    ps->err = "expected ':'";
                    goto fail;
                }
            }
            json_t *v = json_value(ps);
            if (v == NULL) {
                free(key);
                goto fail;
            }
            json_push(j, key, v);
            json_ws(ps);
            if (*ps->p == ',') {
                ps->p++;
                continue;
            }
            if (*ps->p == (obj ? '}' : ']')) {
                ps->p++;
                return j;
            }
            ps->err = obj ? "expected ',' or '}'" : "expected ',' or ']'";
            goto fail;
        }
    fail:
        json_free(j);
        return NULL;
    }
    if (c == '"') {
        char *s = json_string(ps);
        if (s == NULL)
            return NULL;
        json_t *j = json_new(JSON_STR);
        j->str = s;
        return j;
    }
    if (strncmp(ps->p, "true", 4) == 0 || strncmp(ps->p, "false", 5) == 0) {
        json_t *j = json_new(JSON_BOOL);
        j->num = c == 't';
        ps->p += c == 't' ? 4 : 5;
        return j;
    }
    if (strncmp(ps->p, "null", 4) == 0) {
        ps->p += 4;
        return json_new(JSON_NULL);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        /* JSON's grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
        const char *q = ps->p;
        if (*q == '-')
            q++;
        if (*q == '0')
            q++;
        else if (*q >= '1' && *q <= '9')
            while (*q >= '0' && *q <= '9')
                q++;
        else {
            ps->err = "bad number";
            return NULL;
        }
        if (*q == '.') {
            q++;
            if (!(*q >= '0' && *q <= '9')) {
                ps->err = "bad fraction";
                return NULL;
            }
            while (*q >= '0' && *q <= '9')
                q++;
        }
        if (*q == 'e' || *q == 'E') {
            q++;
            if (*q == '+' || *q == '-')
                q++;
            if (!(*q >= '0' && *q <= '9')) {
                ps->err = "bad exponent";
                return NULL;
            }
            while (*q >= '0' && *q <= '9')
                q++;
        }
        json_t *j = json_new(JSON_NUM);
        j->num = strtod(ps->p, NULL);
        ps->p = q;
        return j;
    }
    ps->err = "unexpected character";
    return NULL;
}

/* Parses a whole document; NULL (and *err set) when malformed. */
static json_t *json_parse(const char *text, const char **err)
{
    json_parser_t ps = {text, NULL};
    json_t *j = json_value(&ps);
    if (j != NULL) {
        json_ws(&ps);
        if (*ps.p != '\0') {
            json_free(j);
            j = NULL;
            ps.err = "text after the document";
        }
    }
    *err = ps.err;
    return j;
}

/* The member `key` of object `o`, NULL when absent or `o` is no object. */
static const json_t *json_get(const json_t *o, const char *key)
{
    if (o == NULL || o->type != JSON_OBJ)
        return NULL;
    for (size_t i = 0; i < o->len; i++)
        if (strcmp(o->keys[i], key) == 0)
            return o->items[i];
    return NULL;
}

#define TRACE_CHECK_TIDS 128

/* What a well-formed trace held. */
typedef struct trace_check {
    long begins, ends, instants, metadata;
    long unfinished;          /* E events carrying args.unfinished */
    long threads;             /* distinct tids with B, E or i events */
    long thread_names;        /* thread_name metadata events */
    double recorded, dropped; /* otherData */
} trace_check_t;

/* Checks `text` against the rules above and counts what it holds into
 * `*out`. Returns NULL when it is well formed, else a description of the
 * first problem. */
static const char *trace_check(const char *text, trace_check_t *out)
{
    memset(out, 0, sizeof *out);
    const char *err = NULL;
    json_t *doc = json_parse(text, &err);
    if (doc == NULL)
        return err;
    const char *why = NULL;
    struct {
        double tid, last_ts;
        long depth;
    } tids[TRACE_CHECK_TIDS];
    int ntids = 0;
    const json_t *evs = json_get(doc, "traceEvents");
    const json_t *other = json_get(doc, "otherData");
    if (doc->type != JSON_OBJ || evs == NULL || evs->type != JSON_ARR) {
        why = "no traceEvents array";
        goto out;
    }
    for (size_t i = 0; i < evs->len; i++) {
        const json_t *e = evs->items[i];
        const json_t *ph = json_get(e, "ph"), *pid = json_get(e, "pid"), *tid = json_get(e, "tid");
        const json_t *ts = json_get(e, "ts"), *name = json_get(e, "name"),
                     *cat = json_get(e, "cat"), *args = json_get(e, "args");
        if (e->type != JSON_OBJ || ph == NULL || ph->type != JSON_STR || strlen(ph->str) != 1 ||
            pid == NULL || pid->type != JSON_NUM || tid == NULL || tid->type != JSON_NUM) {
            why = "an event lacks ph, pid or tid";
            goto out;
        }
        char p = ph->str[0];
        if (p == 'M') {
            const json_t *an = json_get(args, "name");
            if (name == NULL || name->type != JSON_STR || an == NULL || an->type != JSON_STR) {
                why = "a metadata event lacks name or args.name";
                goto out;
            }
            out->metadata++;
            if (strcmp(name->str, "thread_name") == 0)
                out->thread_names++;
            continue;
        }
        if (p != 'B' && p != 'E' && p != 'i') {
            why = "an unexpected ph";
            goto out;
        }
        if (ts == NULL || ts->type != JSON_NUM || ts->num < 0) {
            why = "an event lacks ts";
            goto out;
        }
        if (p != 'E' &&
            (name == NULL || name->type != JSON_STR || cat == NULL || cat->type != JSON_STR)) {
            why = "a B or i event lacks name or cat";
            goto out;
        }
        int k = 0;
        while (k < ntids && tids[k].tid != tid->num)
            k++;
        if (k == ntids) {
            if (ntids == TRACE_CHECK_TIDS) {
                why = "too many tids for the checker";
                goto out;
            }
            tids[k].tid = tid->num;
            tids[k].last_ts = 0;
            tids[k].depth = 0;
            ntids++;
        }
        if (ts->num < tids[k].last_ts) {
            why = "timestamps go back on a thread";
            goto out;
        }
        tids[k].last_ts = ts->num;
        if (p == 'B') {
            tids[k].depth++;
            out->begins++;
        } else if (p == 'E') {
            if (tids[k].depth == 0) {
                why = "an E with no open B on its thread";
                goto out;
            }
            tids[k].depth--;
            out->ends++;
            if (json_get(args, "unfinished") != NULL)
                out->unfinished++;
        } else {
            out->instants++;
        }
    }
    for (int k = 0; k < ntids; k++) {
        if (tids[k].depth != 0) {
            why = "a B without its E";
            goto out;
        }
    }
    out->threads = ntids;
    const json_t *rec = json_get(other, "recorded"), *drop = json_get(other, "dropped");
    if (rec == NULL || rec->type != JSON_NUM || drop == NULL || drop->type != JSON_NUM) {
        why = "otherData lacks recorded or dropped";
        goto out;
    }
    out->recorded = rec->num;
    out->dropped = drop->num;
out:
    json_free(doc);
    return why;
}

#endif
