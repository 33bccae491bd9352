/* moirai-bench, suite "async": helpers shared by the I/O cases and their C
 * peers (see io_peers.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io_peers.h"

double io_per_op(uint64_t t0, uint64_t t1, uint64_t ops)
{
    return (double)(t1 - t0) / (double)(ops ? ops : 1);
}

int64_t io_rusage_ns(const struct rusage *ru)
{
    return ((int64_t)ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000000000 +
           ((int64_t)ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) * 1000;
}

int io_listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

size_t io_http_requests(const char *buf, size_t len, size_t *used)
{
    size_t count = 0, start = 0;
    for (;;) {
        const char *end = memmem(buf + start, len - start, "\r\n\r\n", 4);
        if (!end)
            break;
        count++;
        start = (size_t)(end - buf) + 4;
    }
    *used = start;
    return count;
}

/* The file's descriptor once made; -1 before, -errno if making it failed
 * (then it is not tried again). */
static int file_fd = -1;
static int file_tried;

static int file_make(void)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/moirai-bench-file-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    unlink(path);
    enum { CHUNK = 1 << 20 };
    unsigned char *chunk = calloc(1, CHUNK);
    if (!chunk) {
        close(fd);
        return -ENOMEM;
    }
    int err = 0;
    for (uint64_t off = 0; off < IO_FILE_BYTES && !err; off += CHUNK) {
        for (size_t b = 0; b < CHUNK / IO_FILE_BLOCK; b++) {
            uint64_t block = off / IO_FILE_BLOCK + b;
            memcpy(chunk + b * IO_FILE_BLOCK, &block, sizeof(block));
            memset(chunk + b * IO_FILE_BLOCK + sizeof(block), (int)(block & 0xff),
                   IO_FILE_BLOCK - sizeof(block));
        }
        if (pwrite(fd, chunk, CHUNK, (off_t)off) != CHUNK)
            err = errno ? -errno : -EIO;
    }
    /* One pass of reads so that every page is cached before a round. */
    for (uint64_t off = 0; off < IO_FILE_BYTES && !err; off += CHUNK) {
        if (pread(fd, chunk, CHUNK, (off_t)off) != CHUNK)
            err = errno ? -errno : -EIO;
    }
    free(chunk);
    if (err) {
        close(fd);
        return err;
    }
    return fd;
}

int io_file_fd(void)
{
    if (!file_tried) {
        file_tried = 1;
        file_fd = file_make();
        if (file_fd < 0)
            fprintf(stderr, "async/file_read_4k: cannot make the 64 MiB file: %s\n",
                    strerror(-file_fd));
    }
    return file_fd;
}

int io_file_block_ok(const unsigned char *buf, uint64_t block)
{
    uint64_t got;
    memcpy(&got, buf, sizeof(got));
    return got == block && buf[IO_FILE_BLOCK - 1] == (unsigned char)(block & 0xff);
}
