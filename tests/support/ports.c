/*
 * ports.c - claimed loopback ports and who listens on them; see ports.h.
 *
 * Invariants: a port is in held[] exactly while this process has the
 * write lock on its byte of the lock file; lock_fd, once open, is never
 * closed (closing any descriptor of the file would drop every record lock
 * the process has on it).
 */
#include "ports.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Ports below this are left to the machine's own services (Redis 6379,
 * the service's 50051 and the bridge's 8087 are all below it). */
#define RANGE_FLOOR   10000
#define RANGE_CEIL    65535
/* A stretch outside the ephemeral range smaller than this is no range. */
#define MIN_SPAN      1000
/* The most sockets listening on one port tse_test_port_listened_by
 * considers (one per address: 127.0.0.1, 0.0.0.0, ::). */
#define MAX_LISTENERS 16

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int lock_fd = -1;
static pid_t owner;                   /* the process held[] is about */
static unsigned char held[65536 / 8]; /* ports this process holds */
static int next_port;                 /* where this process's walk goes on */

/* -------------------------------------------------------------------------
 * The range
 * ---------------------------------------------------------------------- */

void tse_test_port_range(int *lo, int *hi)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    int elo = 32768, ehi = 60999, below_hi, above_lo;

    if (f == NULL || fscanf(f, "%d %d", &elo, &ehi) != 2) {
        elo = 32768;
        ehi = 60999;
    }
    if (f != NULL)
        fclose(f);
    below_hi = elo - 1 < RANGE_CEIL ? elo - 1 : RANGE_CEIL;
    above_lo = ehi + 1 > RANGE_FLOOR ? ehi + 1 : RANGE_FLOOR;
    if (below_hi - RANGE_FLOOR >= RANGE_CEIL - above_lo && below_hi - RANGE_FLOOR + 1 >= MIN_SPAN) {
        *lo = RANGE_FLOOR;
        *hi = below_hi;
    } else if (RANGE_CEIL - above_lo + 1 >= MIN_SPAN) {
        *lo = above_lo;
        *hi = RANGE_CEIL;
    } else {
        *lo = RANGE_FLOOR;
        *hi = RANGE_CEIL;
    }
}

/* -------------------------------------------------------------------------
 * Claims (mu held)
 * ---------------------------------------------------------------------- */

static bool is_held(int port)
{
    return (held[port / 8] >> (port % 8)) & 1;
}

static void set_held(int port, bool on)
{
    if (on)
        held[port / 8] |= (unsigned char)(1u << (port % 8));
    else
        held[port / 8] &= (unsigned char)~(1u << (port % 8));
}

/* A forked child holds none of its parent's record locks: it forgets
 * them rather than hand out a port its parent has. */
static void forget_if_forked(void)
{
    if (owner != getpid()) {
        memset(held, 0, sizeof(held));
        owner = getpid();
        next_port = 0;
    }
}

static int lock_file(void)
{
    if (lock_fd >= 0)
        return lock_fd;
    lock_fd = open(TSE_TEST_PORTS_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock_fd < 0) {
        fprintf(stderr, "cannot open %s: %s\n", TSE_TEST_PORTS_LOCK_FILE, strerror(errno));
        return -1;
    }
    /* Whoever creates it lets every user's tests share it (fails, harmless,
     * when it is somebody else's). */
    (void)fchmod(lock_fd, 0666);
    return lock_fd;
}

static bool lock_byte(int port, short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = port, .l_len = 1};

    return fcntl(lock_fd, F_SETLK, &fl) == 0;
}

/* Whether a server could bind 127.0.0.1:port as ours do (SO_REUSEADDR:
 * connections of a former server in TIME_WAIT do not count). */
static bool nothing_listens(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    bool ok;

    if (fd < 0)
        return false;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static bool claim_locked(int port)
{
    if (is_held(port) || !lock_byte(port, F_WRLCK))
        return false;
    if (!nothing_listens(port)) {
        lock_byte(port, F_UNLCK);
        return false;
    }
    set_held(port, true);
    return true;
}

/* Where a process starts its walk: its own point of the range. */
static int start_offset(int span)
{
    struct timespec ts;
    unsigned long long x;

    clock_gettime(CLOCK_REALTIME, &ts);
    x = (unsigned long long)getpid() * 0x9E3779B97F4A7C15ULL;
    x ^= (unsigned long long)ts.tv_nsec * 0xBF58476D1CE4E5B9ULL + (unsigned long long)ts.tv_sec;
    x ^= x >> 31;
    return (int)(x % (unsigned long long)span);
}

int tse_test_port_claim(void)
{
    int lo, hi, port = -1;

    tse_test_port_range(&lo, &hi);
    pthread_mutex_lock(&mu);
    forget_if_forked();
    if (lock_file() >= 0) {
        if (next_port < lo || next_port > hi)
            next_port = lo + start_offset(hi - lo + 1);
        for (int i = 0; i <= hi - lo && port < 0; i++) {
            int p = next_port;

            next_port = p == hi ? lo : p + 1;
            if (claim_locked(p))
                port = p;
        }
        if (port < 0)
            fprintf(stderr, "no port of %d..%d is free (locks in %s)\n", lo, hi,
                    TSE_TEST_PORTS_LOCK_FILE);
    }
    pthread_mutex_unlock(&mu);
    return port;
}

bool tse_test_port_try_claim(int port)
{
    bool ok = false;

    if (port <= 0 || port > 65535)
        return false;
    pthread_mutex_lock(&mu);
    forget_if_forked();
    if (lock_file() >= 0)
        ok = claim_locked(port);
    pthread_mutex_unlock(&mu);
    return ok;
}

void tse_test_port_release(int port)
{
    if (port <= 0 || port > 65535)
        return;
    pthread_mutex_lock(&mu);
    forget_if_forked();
    if (is_held(port)) {
        lock_byte(port, F_UNLCK);
        set_held(port, false);
    }
    pthread_mutex_unlock(&mu);
}

/* -------------------------------------------------------------------------
 * Who listens
 * ---------------------------------------------------------------------- */

/* Appends to inodes (n of max used) the inode of every socket path
 * (/proc/net/tcp or tcp6) lists in state LISTEN on port; the new n. */
static int listening_inodes(const char *path, int port, unsigned long *inodes, int n, int max)
{
    FILE *f = fopen(path, "r");
    char line[512];

    if (f == NULL)
        return n;
    /* The first line names the columns. */
    if (fgets(line, sizeof(line), f) != NULL) {
        while (n < max && fgets(line, sizeof(line), f) != NULL) {
            unsigned local_port, state;
            unsigned long inode;

            /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
            if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%X %*[0-9A-Fa-f]:%*X %X %*s %*s %*s %*s %*s %lu",
                       &local_port, &state, &inode) == 3 &&
                (int)local_port == port && state == 0x0A && inode != 0)
                inodes[n++] = inode;
        }
    }
    fclose(f);
    return n;
}

/* Whether one of pid's descriptors is the socket of one of the inodes. */
static bool has_socket(pid_t pid, const unsigned long *inodes, int n)
{
    char dir[64], link[64 + sizeof(((struct dirent *)0)->d_name)], target[64];
    struct dirent *e;
    bool found = false;
    DIR *d;

    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    d = opendir(dir);
    if (d == NULL)
        return false;
    while (!found && (e = readdir(d)) != NULL) {
        unsigned long inode;
        ssize_t len;

        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "%s/%s", dir, e->d_name);
        len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (sscanf(target, "socket:[%lu]", &inode) != 1)
            continue;
        for (int i = 0; i < n && !found; i++)
            found = inodes[i] == inode;
    }
    closedir(d);
    return found;
}

bool tse_test_port_listened_by(int port, pid_t pid)
{
    unsigned long inodes[MAX_LISTENERS];
    int n;

    if (pid <= 0)
        return false;
    n = listening_inodes("/proc/net/tcp", port, inodes, 0, MAX_LISTENERS);
    n = listening_inodes("/proc/net/tcp6", port, inodes, n, MAX_LISTENERS);
    return n > 0 && has_socket(pid, inodes, n);
}
