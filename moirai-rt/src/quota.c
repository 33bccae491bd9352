/* CPU quotas through cgroup v2 cpu.max or cgroup v1 cpu.cfs_quota_us
 * (see moirai/rt/quota.h). The controller's mount point comes from
 * /proc/self/mountinfo, parsed for the fifth field (mount point), the
 * file-system type after " - ", and the super options (for v1's "cpu"). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <moirai/core/alloc.h>
#include <moirai/rt/quota.h>

struct moirai_rt_quota {
    int version;
    bool created;
    char root[PATH_MAX];
    char path[PATH_MAX];
};

/* Whether comma-separated `opts` contains exactly `word`. */
static bool has_option(const char *opts, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = opts; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, word, n) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

static bool v2_has_cpu(const char *mount)
{
    char file[PATH_MAX + 32], buf[512];
    snprintf(file, sizeof(file), "%s/cgroup.controllers", mount);
    FILE *f = fopen(file, "re");
    if (!f)
        return false;
    bool found = false;
    if (fgets(buf, sizeof(buf), f))
        for (char *tok = strtok(buf, " \n"); tok; tok = strtok(NULL, " \n"))
            found |= strcmp(tok, "cpu") == 0;
    fclose(f);
    return found;
}

/* Finds the cpu controller: version 2 or 1 and its root, or -ENOTSUP. */
static int find_controller(char *root, size_t cap)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -ENOTSUP;
    char line[4096], v1[PATH_MAX] = "";
    int version = 0;
    while (fgets(line, sizeof(line), f)) {
        char mnt[PATH_MAX];
        /* Fields: id parent major:minor root mountpoint options ... - type source super */
        if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
            continue;
        char *sep = strstr(line, " - ");
        if (!sep)
            continue;
        char type[64], source[256], super[1024];
        if (sscanf(sep + 3, "%63s %255s %1023s", type, source, super) < 2)
            continue;
        if (strcmp(type, "cgroup2") == 0 && v2_has_cpu(mnt)) {
            snprintf(root, cap, "%s", mnt);
            version = 2;
            break;
        }
        if (strcmp(type, "cgroup") == 0 && has_option(super, "cpu") && !v1[0])
            snprintf(v1, sizeof(v1), "%s", mnt);
    }
    fclose(f);
    if (version == 2)
        return 2;
    if (v1[0]) {
        snprintf(root, cap, "%s", v1);
        return 1;
    }
    return -ENOTSUP;
}

static int write_file(const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int e = n < 0 ? -errno : 0;
    close(fd);
    return e;
}

static bool valid_name(const char *name)
{
    if (!name || !*name || strlen(name) > 200 || !strcmp(name, ".") || !strcmp(name, ".."))
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

static bool valid_times(uint64_t quota, uint64_t period)
{
    return period >= 1000000u && period <= 1000000000u && quota >= 1000000u;
}

int moirai_rt_quota_set(moirai_rt_quota_t *q, uint64_t quota_ns, uint64_t period_ns)
{
    if (!q || !valid_times(quota_ns, period_ns))
        return -EINVAL;
    char text[64];
    unsigned long long qu = quota_ns / 1000u, pu = period_ns / 1000u;
    if (q->version == 2) {
        snprintf(text, sizeof(text), "%llu %llu", qu, pu);
        return write_file(q->path, "cpu.max", text);
    }
    /* v1: the quota must stay consistent with the period at each write
     * step, so clear the quota first. */
    int rc = write_file(q->path, "cpu.cfs_quota_us", "-1");
    if (rc)
        return rc;
    snprintf(text, sizeof(text), "%llu", pu);
    if ((rc = write_file(q->path, "cpu.cfs_period_us", text)))
        return rc;
    snprintf(text, sizeof(text), "%llu", qu);
    return write_file(q->path, "cpu.cfs_quota_us", text);
}

int moirai_rt_quota_create(moirai_rt_quota_t **out, const char *name, uint64_t quota_ns,
                           uint64_t period_ns)
{
    if (!out || !valid_name(name) || !valid_times(quota_ns, period_ns))
        return -EINVAL;
    moirai_rt_quota_t *q = moirai_calloc(1, sizeof(*q));
    if (!q)
        return -ENOMEM;
    int v = find_controller(q->root, sizeof(q->root));
    if (v < 0) {
        moirai_free(q);
        return v;
    }
    q->version = v;
    snprintf(q->path, sizeof(q->path), "%.*s/%s", (int)(sizeof(q->path) - 220), q->root, name);
    if (mkdir(q->path, 0755) == 0) {
        q->created = true;
    } else if (errno != EEXIST) {
        int e = -errno;
        moirai_free(q);
        return e;
    }
    /* v2: a threaded cgroup accepts single threads (cgroup.threads); a
     * domain cgroup only whole processes. Best effort: an older kernel or
     * a parent that cannot host threaded children keeps it a domain, and
     * attach then reports the kernel's refusal. */
    if (q->version == 2 && q->created)
        (void)write_file(q->path, "cgroup.type", "threaded");
    int rc = moirai_rt_quota_set(q, quota_ns, period_ns);
    if (rc) {
        if (q->created)
            rmdir(q->path);
        moirai_free(q);
        return rc;
    }
    *out = q;
    return 0;
}

static int move_thread(const char *dir, int version, pid_t tid)
{
    char text[32];
    snprintf(text, sizeof(text), "%d", tid ? (int)tid : (int)syscall(SYS_gettid));
    /* v2 places single threads only in threaded cgroups (create makes
     * ours one); writing the id to cgroup.procs instead would move the
     * whole process, so a refusal is returned as it is. */
    return write_file(dir, version == 2 ? "cgroup.threads" : "tasks", text);
}

int moirai_rt_quota_attach_thread(moirai_rt_quota_t *q, pid_t tid)
{
    if (!q || tid < 0)
        return -EINVAL;
    return move_thread(q->path, q->version, tid);
}

int moirai_rt_quota_detach_thread(moirai_rt_quota_t *q, pid_t tid)
{
    if (!q || tid < 0)
        return -EINVAL;
    return move_thread(q->root, q->version, tid);
}

int moirai_rt_quota_version(const moirai_rt_quota_t *q)
{
    return q ? q->version : -EINVAL;
}

const char *moirai_rt_quota_path(const moirai_rt_quota_t *q)
{
    return q ? q->path : NULL;
}

int moirai_rt_quota_throttled(const moirai_rt_quota_t *q, uint64_t *periods, uint64_t *throttled)
{
    if (!q || !periods || !throttled)
        return -EINVAL;
    char file[PATH_MAX + 16], key[64];
    snprintf(file, sizeof(file), "%s/cpu.stat", q->path);
    FILE *f = fopen(file, "re");
    if (!f)
        return -errno;
    unsigned long long v;
    bool got_p = false, got_t = false;
    while (fscanf(f, "%63s %llu", key, &v) == 2) {
        if (!strcmp(key, "nr_periods")) {
            *periods = v;
            got_p = true;
        } else if (!strcmp(key, "nr_throttled")) {
            *throttled = v;
            got_t = true;
        }
    }
    fclose(f);
    return got_p && got_t ? 0 : -ENOTSUP;
}

int moirai_rt_quota_destroy(moirai_rt_quota_t *q)
{
    if (!q)
        return -EINVAL;
    int rc = 0;
    if (q->created) {
        /* Threads still inside go back to the root, else rmdir fails. */
        char file[PATH_MAX + 16];
        snprintf(file, sizeof(file), "%s/%s", q->path,
                 q->version == 2 ? "cgroup.threads" : "tasks");
        FILE *f = fopen(file, "re");
        if (f) {
            int tid;
            while (fscanf(f, "%d", &tid) == 1)
                (void)move_thread(q->root, q->version, tid);
            fclose(f);
        }
        if (rmdir(q->path) != 0)
            rc = -errno;
    }
    moirai_free(q);
    return rc;
}
