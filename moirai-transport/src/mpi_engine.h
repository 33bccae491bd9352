/* The MPI progress engine: the one thread of a process that makes MPI
 * calls, and the byte streams ("channels") it carries between ranks.
 *
 * MPI implementations busy-poll a whole core inside a blocking call
 * (MPI_Recv, MPI_Wait), so no worker thread or fiber may ever call MPI.
 * Instead one progress thread per process owns MPI: it initializes it
 * (unless the program did), sends what a queue of outgoing messages holds
 * with MPI_Isend, receives every incoming message with MPI_Iprobe and
 * MPI_Irecv, polls them with MPI_Test, and delivers their bytes into the
 * channel they belong to, waking the fiber or thread parked there. When
 * there is nothing to do it spins briefly, then sleeps for growing
 * intervals up to 1 ms (it must poll MPI, which has no descriptor to wait
 * on), and sleeps without a timeout while no channel exists; queuing a
 * message wakes it at once through an eventfd.
 *
 * Channels: one byte stream in each direction between this rank and one
 * other rank, within an "epoch". An epoch is what one MPI node of the
 * process uses: the k-th epoch opened in each process talks to the k-th
 * epoch of every other process, so a program that creates and destroys
 * its MPI nodes in the same order on every rank (the SPMD model) reuses
 * MPI safely, and late bytes of an old node never reach a new one. Bytes
 * that arrive for an epoch this process has not opened yet are kept for
 * it.
 *
 * Flow control: a sender may have at most MPI_ENGINE_WINDOW bytes of a
 * channel that the reader has not consumed yet; the reader returns credit
 * every quarter window. Writes larger than MPI_ENGINE_MSG_MAX go as
 * several messages.
 *
 * MPI itself: if the program has not initialized MPI, the progress thread
 * calls MPI_Init_thread (requesting MPI_THREAD_MULTIPLE, so the program
 * may make its own MPI calls too) and finalizes it at process exit (an
 * atexit handler stops the thread, which calls MPI_Finalize). If the
 * program initialized MPI, it must have obtained MPI_THREAD_MULTIPLE
 * (the progress thread calls MPI concurrently with the program's threads)
 * and it finalizes MPI itself, after destroying its MPI nodes. All
 * traffic goes through a duplicate of MPI_COMM_WORLD, so it never
 * matches the program's own receives. */
#ifndef MOIRAI_TRANSPORT_MPI_ENGINE_H
#define MOIRAI_TRANSPORT_MPI_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* The largest message the engine sends; longer writes are split. */
#define MPI_ENGINE_MSG_MAX ((size_t)64 * 1024)
/* Bytes of one channel in flight (sent, not yet consumed by the reader). */
#define MPI_ENGINE_WINDOW ((size_t)1024 * 1024)

struct mpi_chan;

/* Starts the progress thread if it is not running (initializing MPI if
 * the program did not) and takes a reference on it; fills *rank and *size
 * (either may be NULL). Parks the calling fiber (or blocks the thread)
 * while MPI starts. Returns 0, -ENOTSUP when MPI cannot be used (the
 * program initialized MPI below MPI_THREAD_MULTIPLE, or finalized it), -EIO
 * when MPI failed to start, -EAGAIN/-ENOMEM when the thread or its
 * resources could not be created. A failure to start is remembered: later
 * calls return the same error. Thread-safe. */
int moirai__mpi_engine_acquire(int *rank, int *size);

/* Drops a reference taken by moirai__mpi_engine_acquire(). When no
 * reference and no claimed channel is left, waits (at most 2 s) until the
 * thread has sent what was queued and makes no more MPI calls, so that a
 * program that finalizes MPI itself may do so next. The thread keeps
 * running (sleeping without a timeout) until the process exits, because
 * MPI can be initialized only once per process. Thread-safe. */
void moirai__mpi_engine_release(void);

/* The CPU time the progress thread has used, in ns, into *ns. 0, or
 * -ESRCH when it is not running. For tests and statistics. */
int moirai__mpi_engine_cputime(uint64_t *ns);

/* Opens the next epoch (engine acquired): creates this rank's channel to
 * every other rank, unclaimed, keeping bytes already received for it.
 * Fills *epoch. Returns 0, -EBUSY when an epoch is open already (one MPI
 * node per process at a time), -ENOSPC when the epochs are exhausted (more
 * than the MPI tag space allows), -ENOMEM. */
int moirai__mpi_epoch_open(uint32_t *epoch);

/* Claims the channel to `rank` of the open `epoch`: the caller owns it
 * until moirai__mpi_chan_close(). Returns 0, -EHOSTUNREACH when `rank` is
 * this rank, out of range, or its channel is claimed or gone already, or
 * `epoch` is not open. */
int moirai__mpi_chan_claim(uint32_t epoch, int rank, struct mpi_chan **out);

/* Closes `epoch`: no more claims; the channels never claimed are shut
 * down (their other side reads end of stream) and freed. Claimed channels
 * live on until their owners close them. */
void moirai__mpi_epoch_close(uint32_t epoch);

/* The rank at the other end of `c`. */
int moirai__mpi_chan_rank(const struct mpi_chan *c);

/* Reads 1..len bytes (len > 0) into buf, parking the calling fiber or
 * blocking the thread until some arrive. Returns the count; 0 at end of
 * stream (the other side shut its channel down) once every byte before it
 * was read; -ETIMEDOUT at `deadline` (absolute, moirai_clock_now_ns(),
 * MOIRAI_DEADLINE_NEVER for none); -ECANCELED after
 * moirai__mpi_chan_shutdown(); -EINVAL when buf is NULL or len is 0. One
 * reader at a time. */
ssize_t moirai__mpi_chan_read(struct mpi_chan *c, void *buf, size_t len, uint64_t deadline);

/* Queues every byte of the `cnt` (0..4) iovecs, in order, parking or
 * blocking while the window is full. Returns 0 once all are queued for
 * the progress thread (they are copied); -EPIPE when the other side shut
 * the channel down; -ECANCELED after moirai__mpi_chan_shutdown();
 * -ETIMEDOUT at `deadline`; -ENOMEM; -EINVAL for a bad iovec array. On an
 * error after part of the bytes were queued, that part still goes. One
 * writer at a time. */
int moirai__mpi_chan_writev(struct mpi_chan *c, const struct iovec *iov, int cnt,
                            uint64_t deadline);

/* Queues what the window takes now of the `cnt` (0..4) iovecs, in order,
 * without waiting: the bytes taken (0 when the window is full; fewer than
 * asked when it fills or memory runs out), -EPIPE (the other side shut
 * the channel down), -ECANCELED (after shutdown), -EINVAL (a bad iovec
 * array). Same one-writer rule as writev. */
ssize_t moirai__mpi_chan_try_writev(struct mpi_chan *c, const struct iovec *iov, int cnt);

/* Bytes that arrived and were not read yet. Never blocks. */
size_t moirai__mpi_chan_unread(const struct mpi_chan *c);

/* Ends both directions: a parked read or writev returns -ECANCELED
 * promptly, later ones too; the other side reads the bytes already queued
 * and then end of stream. Idempotent; any thread. */
void moirai__mpi_chan_shutdown(struct mpi_chan *c);

/* Frees `c` (shutting it down first if needed). No read or writev may be
 * in progress or follow. Closing the last claimed channel while no
 * reference is left waits as moirai__mpi_engine_release() does. */
void moirai__mpi_chan_close(struct mpi_chan *c);

#endif
