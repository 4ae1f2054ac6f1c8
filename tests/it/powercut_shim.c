/*
 * A power cut, simulated: LD_PRELOAD this into a process and every file it
 * syncs (fsync, fdatasync) directly inside $POWERCUT_WATCH is copied, whole
 * and atomically, to $POWERCUT_SHADOW/<name> right after the sync succeeded.
 * After kill -9, replacing the watched folder's files with the shadow copies
 * gives the state a power loss at that instant could leave: every file as of
 * its last sync, a file never synced absent. Writes that were never synced
 * are lost, as the page cache would lose them.
 *
 * unlink of a watched file removes its shadow copy (metadata operations are
 * taken as durable in order, as on a journaling file system).
 *
 * Built by tests/it/durability.rs: cc -shared -fPIC -o shim.so powercut_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The name of `path` if it lies directly in the watched folder, else NULL. */
static const char *watched_name(const char *path) {
    const char *watch = getenv("POWERCUT_WATCH");
    if (!watch || !getenv("POWERCUT_SHADOW")) return NULL;
    size_t n = strlen(watch);
    if (strncmp(path, watch, n) != 0 || path[n] != '/') return NULL;
    const char *name = path + n + 1;
    if (*name == '\0' || strchr(name, '/')) return NULL;
    return name;
}

static void snapshot(int fd) {
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    if (len <= 0) return;
    path[len] = '\0';
    const char *name = watched_name(path);
    if (!name) return;
    const char *shadow = getenv("POWERCUT_SHADOW");
    char tmp[PATH_MAX], dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/%s", shadow, name);
    snprintf(tmp, sizeof tmp, "%s/.%s.partial", shadow, name);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) return;
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return;
    }
    static char buf[1 << 16];
    off_t off = 0;
    for (;;) {
        ssize_t r = pread(in, buf, sizeof buf, off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        ssize_t done = 0;
        while (done < r) {
            ssize_t w = write(out, buf + done, (size_t)(r - done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) goto out;
            done += w;
        }
        off += r;
    }
out:
    close(in);
    close(out);
    rename(tmp, dst);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    pthread_mutex_lock(&lock);
    int rc = real(fd);
    if (rc == 0) snapshot(fd);
    pthread_mutex_unlock(&lock);
    return rc;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    pthread_mutex_lock(&lock);
    int rc = real(fd);
    if (rc == 0) snapshot(fd);
    pthread_mutex_unlock(&lock);
    return rc;
}

static void forget(const char *path) {
    char abs[PATH_MAX];
    if (path[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) return;
        snprintf(abs, sizeof abs, "%s/%s", cwd, path);
        path = abs;
    }
    const char *name = watched_name(path);
    if (!name) return;
    char dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/%s", getenv("POWERCUT_SHADOW"), name);
    static int (*real_unlink)(const char *);
    if (!real_unlink) real_unlink = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
    real_unlink(dst);
}

int unlink(const char *path) {
    static int (*real)(const char *);
    if (!real) real = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
    pthread_mutex_lock(&lock);
    int rc = real(path);
    if (rc == 0) forget(path);
    pthread_mutex_unlock(&lock);
    return rc;
}
