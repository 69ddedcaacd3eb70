/*
 * bench_slowloris - how fast the REST bridge answers /health while slow
 * clients hold connections (issue 9's target: within 100 ms under 200
 * slowloris connections).
 *
 *   bench_slowloris --port=P [--conns=200] [--line-ms=300] [--seconds=30] [--probe-ms=50]
 *
 * One thread keeps --conns connections open, each sending one more header
 * line every --line-ms and never ending its headers (a connection the bridge
 * cuts at its header timeout is opened again, as an attacker would); another
 * asks GET /health on a fresh connection every --probe-ms and times the whole
 * exchange, connect to last byte. Prints the figures; asserts nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int port;
    int conns;
    int line_ms;
    int seconds;
    int probe_ms;
} options;

static atomic_bool done;
static atomic_long reopened;

static long long now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int connect_to(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;

    if (fd < 0)
        return -1;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *s)
{
    size_t n = strlen(s);

    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

/* A slow client: the request line now, then one header line at a time. */
static int slow_open(int port)
{
    int fd = connect_to(port);

    if (fd >= 0 && !send_all(fd, "GET /health HTTP/1.1\r\nHost: bench\r\n")) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* True while the bridge has not answered or closed fd. */
static bool still_held(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, 0) == 0;
}

static void *slow_main(void *arg)
{
    const options *o = arg;
    int *fds = calloc((size_t)o->conns, sizeof(*fds));
    unsigned long line = 0;

    if (fds == NULL)
        return NULL;
    for (int i = 0; i < o->conns; i++)
        fds[i] = slow_open(o->port);
    while (!atomic_load(&done)) {
        char header[64];

        usleep((useconds_t)o->line_ms * 1000);
        snprintf(header, sizeof(header), "X-Slow-%lu: x\r\n", line++);
        for (int i = 0; i < o->conns; i++) {
            if (fds[i] >= 0 && still_held(fds[i]) && send_all(fds[i], header))
                continue;
            if (fds[i] >= 0)
                close(fds[i]);
            fds[i] = slow_open(o->port);
            atomic_fetch_add(&reopened, 1);
        }
    }
    for (int i = 0; i < o->conns; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    return NULL;
}

/* One GET /health on a fresh connection: its HTTP status (0: none), and
 * the time it took in *us. */
static int probe(int port, long long *us)
{
    long long start = now_us();
    int fd = connect_to(port), status = 0;
    char buf[1024];
    size_t len = 0;

    if (fd >= 0 &&
        send_all(fd, "GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")) {
        struct timeval tv = {.tv_sec = 5};
        ssize_t r;

        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        while (len < sizeof(buf) - 1 && (r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0)) > 0)
            len += (size_t)r;
        buf[len] = '\0';
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
            status = 0;
    }
    if (fd >= 0)
        close(fd);
    *us = now_us() - start;
    return status;
}

static int by_value(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;

    return (x > y) - (x < y);
}

static void parse(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        if (sscanf(argv[i], "--port=%d", &o->port) == 1 ||
            sscanf(argv[i], "--conns=%d", &o->conns) == 1 ||
            sscanf(argv[i], "--line-ms=%d", &o->line_ms) == 1 ||
            sscanf(argv[i], "--seconds=%d", &o->seconds) == 1 ||
            sscanf(argv[i], "--probe-ms=%d", &o->probe_ms) == 1)
            continue;
        fprintf(stderr, "bench_slowloris: unknown argument %s\n", argv[i]);
        exit(2);
    }
    if (o->port <= 0 || o->conns < 0 || o->line_ms <= 0 || o->seconds <= 0 || o->probe_ms <= 0) {
        fprintf(stderr, "usage: bench_slowloris --port=P [--conns=200] [--line-ms=300] "
                        "[--seconds=30] [--probe-ms=50]\n");
        exit(2);
    }
}

int main(int argc, char **argv)
{
    options o = {.conns = 200, .line_ms = 300, .seconds = 30, .probe_ms = 50};
    size_t cap, n = 0, bad = 0, over = 0;
    long long *lat, end, sum = 0;
    pthread_t slow;

    parse(argc, argv, &o);
    cap = (size_t)o.seconds * 1000 / (size_t)o.probe_ms + 16;
    if ((lat = calloc(cap, sizeof(*lat))) == NULL ||
        pthread_create(&slow, NULL, slow_main, &o) != 0)
        return 1;
    usleep(500000); /* every slow connection open before the first probe */
    end = now_us() + (long long)o.seconds * 1000000;
    while (now_us() < end && n < cap) {
        long long us;
        if (probe(o.port, &us) != 200)
            bad++;
        lat[n++] = us;
        sum += us;
        over += us > 100000;
        usleep((useconds_t)o.probe_ms * 1000);
    }
    atomic_store(&done, true);
    pthread_join(slow, NULL);
    qsort(lat, n, sizeof(*lat), by_value);
    printf("slowloris: %d connections, a header line every %d ms, %ld reopened after a cut\n",
           o.conns, o.line_ms, (long)atomic_load(&reopened));
    printf("/health every %d ms for %d s: %zu answers, %zu not 200, latency mean %.2f ms, "
           "p50 %.2f ms, p99 %.2f ms, max %.2f ms, over 100 ms: %zu\n",
           o.probe_ms, o.seconds, n, bad, n ? (double)sum / (double)n / 1000.0 : 0.0,
           n ? (double)lat[n / 2] / 1000.0 : 0.0, n ? (double)lat[n * 99 / 100] / 1000.0 : 0.0,
           n ? (double)lat[n - 1] / 1000.0 : 0.0, over);
    free(lat);
    return 0;
}
