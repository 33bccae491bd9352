/* moirai-bench, suite "transport": helpers for the cases that run in two
 * processes.
 *
 * The child is moirai-bench itself, started afresh (posix_spawn of
 * /proc/self/exe with BENCH_CHILD_FLAG and a role), not forked: by the time
 * the transport suite runs, earlier suites have loaded runtimes into the
 * process (LLVM's OpenMP, whose fork handler asserts in a forked child; the
 * Go runtime; Boost.Fiber's pool), and a forked child would inherit them.
 * It gets two pipes and up to two descriptors of the case (a socket, a
 * memfd) at fixed numbers, does its set-up (attaches, connects), says
 * "ready", and starts its workload when the parent says "go". The parent
 * starts its clock just before "go", so the start and the set-up of the
 * child are not measured. */
#ifndef MOIRAI_BENCH_TRANSPORT_PROC_H
#define MOIRAI_BENCH_TRANSPORT_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct bench_child {
    pid_t pid;
    int go_w;    /* parent -> child */
    int ready_r; /* child -> parent */
    bool reaped; /* bench_child_exited() saw it exit */
    int status;  /* its wait status, once reaped */
} bench_child_t;

/* What a child gets: its count, an optional text (an endpoint), the two
 * pipes and the case's descriptors (-1 when not given). */
typedef struct bench_child_args {
    uint64_t n;
    const char *text;
    int go_r, ready_w;
    int fd[2];
} bench_child_args_t;

/* A child's part of a case, by role name; returns 0 on success. */
typedef struct bench_child_role {
    const char *name;
    int (*run)(const bench_child_args_t *a);
} bench_child_role_t;

/* Every role, ending with a NULL name (bench_transport.c). */
extern const bench_child_role_t bench_transport_child_roles[];

/* Writes all of buf: 0, or -1 on an error. */
int bench_write_all(int fd, const void *buf, size_t len);
/* Reads exactly len bytes: 0, or -1 on an error or end of file. */
int bench_read_all(int fd, void *buf, size_t len);
/* In the child: reports ready, then waits for go. 0, or -1. */
int bench_child_handshake(int go_r, int ready_w);
/* Starts a child that runs `role` (see bench_child_main) with `n`, `text`
 * (may be NULL) and the descriptors fd0 and fd1 (-1: none; below 100).
 * 0, or -1 if the child cannot be started. */
int bench_child_start(bench_child_t *c, const char *role, uint64_t n, const char *text, int fd0,
                      int fd1);
/* Makes a shared-memory object of `size` bytes (a memfd, close-on-exec),
 * maps it shared into *map, and returns its descriptor, or -1. */
int bench_shared_memory(size_t size, void **map);
/* In a child: maps the shared-memory object `fd` of `size` bytes; NULL on
 * failure. */
void *bench_shared_map(int fd, size_t size);
/* In the parent: waits until the child is ready. 0, or -1. */
int bench_child_wait_ready(bench_child_t *c);
/* In the parent: tells the child to start. 0, or -1. */
int bench_child_go(bench_child_t *c);
/* In the parent, polling: true once the child has exited (it is then
 * reaped, and bench_child_finish() reports its status). A parent loop that
 * waits on something only the child can provide calls this now and then,
 * so that a child that died is noticed instead of waited for forever. */
bool bench_child_exited(bench_child_t *c);
/* Reaps the child (killing it first with `kill_it`): 0 if it exited with
 * status 0, else -1. */
int bench_child_finish(bench_child_t *c, bool kill_it);

/* A 64-byte message: its sequence number, then a filler derived from it
 * so that a torn message is noticed too. */
typedef struct msg64 {
    uint64_t seq;
    uint64_t fill[7];
} msg64_t;

static inline void msg64_make(msg64_t *m, uint64_t seq)
{
    m->seq = seq;
    for (int i = 0; i < 7; i++)
        m->fill[i] = seq * 0x9e3779b97f4a7c15ull + (uint64_t)i;
}

static inline bool msg64_check(const msg64_t *m, uint64_t seq)
{
    if (m->seq != seq)
        return false;
    for (int i = 0; i < 7; i++) {
        if (m->fill[i] != seq * 0x9e3779b97f4a7c15ull + (uint64_t)i)
            return false;
    }
    return true;
}

#endif
