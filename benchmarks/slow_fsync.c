/* A slow-commit day on demand (issue 16, item 5): an LD_PRELOAD shim for a
 * PostgreSQL server of your own that sleeps SLOW_FSYNC_US microseconds
 * before every fdatasync() and fsync(), while the caller holds whatever lock
 * it holds (WALWriteLock for a commit's WAL flush), as slow storage would.
 *
 *   gcc -shared -fPIC -O2 -o /tmp/slow_fsync.so benchmarks/slow_fsync.c -ldl
 *   initdb -D /tmp/slowpg -A trust -U postgres     (as a non-root user)
 *   LD_PRELOAD=/tmp/slow_fsync.so SLOW_FSYNC_US=1500 \
 *       pg_ctl -D /tmp/slowpg -o "-p 55432 -c listen_addresses=127.0.0.1" start
 *   .venv/bin/python -m benchmarks.run --dsn postgresql://postgres@127.0.0.1:55432/postgres \
 *       --only process-atomic --concurrencies 1
 *
 * Never load it into a server anyone else uses.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

static void slow_down(void)
{
    const char *us = getenv("SLOW_FSYNC_US");
    int delay = us ? atoi(us) : 0;
    if (delay > 0)
        usleep((useconds_t) delay);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int)) dlsym(RTLD_NEXT, "fdatasync");
    slow_down();
    return real(fd);
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        real = (int (*)(int)) dlsym(RTLD_NEXT, "fsync");
    slow_down();
    return real(fd);
}
