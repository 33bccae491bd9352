/* moirai-bench, suite "transport": helpers for the cases that run in two
 * processes.
 *
 * A child is forked with two pipes: it does its set-up (connects), says
 * "ready", and starts its workload when the parent says "go". The parent
 * starts its clock just before "go", so the fork and the child's set-up are
 * not measured. The child leaves with _exit: it must not run the parent's
 * atexit handlers (the Go runtime's, Boost's). */
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

typedef int (*bench_child_fn)(void *arg, int go_r, int ready_w);

/* Writes all of buf: 0, or -1 on an error. */
int bench_write_all(int fd, const void *buf, size_t len);
/* Reads exactly len bytes: 0, or -1 on an error or end of file. */
int bench_read_all(int fd, void *buf, size_t len);
/* In the child: reports ready, then waits for go. 0, or -1. */
int bench_child_handshake(int go_r, int ready_w);
/* Forks a child that runs fn(arg, go_r, ready_w) and exits with status 0
 * when it returned 0. 0, or -1 if the child cannot be started. */
int bench_child_start(bench_child_t *c, bench_child_fn fn, void *arg);
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
