/* StatsD load generator for benches/statsd_vs_etsy.py: UDP lines at a paced rate.
 *
 * Usage: statsd_load HOST PORT LINES_PER_SEC SECONDS [LINES_PER_DATAGRAM] [NAMES]
 *
 * Sends StatsD lines over a connected UDP socket with sendmmsg(2), LINES_PER_DATAGRAM
 * lines per datagram (default 1; several lines are joined with '\n' as buffered
 * clients do), from NAMES distinct metric names (default 1000) of mixed types: 40 %
 * counters (`|c`, one in four with a `|@0.5` sample rate), 30 % gauges (`|g`), 30 %
 * timers (`|ms`). Values vary from line to line. The lines are precomputed (a pool of
 * 65,536) so the sender spends its time in the kernel, not in formatting: Python
 * cannot offer more than ~150k lines/s here, and the daemons under test must be
 * pushed past 1M.
 *
 * Pacing: the sender keeps the lines sent within one batch (<= 64 datagrams) of
 * LINES_PER_SEC × elapsed, sleeping when ahead. When it cannot keep up it sends flat
 * out, and the report says so (the achieved rate is what counts, not the offered one).
 *
 * Prints one JSON object on stdout: lines and datagrams actually sent (sendmmsg's
 * count, so a datagram the kernel refused is not counted), send errors, elapsed
 * seconds. Loopback UDP drops at the receiver's socket buffer, never at the sender, so
 * lines sent − lines the daemon counted = lines lost.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define POOL_LINES 65536
#define BATCH 64

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) { /* xorshift64*: deterministic, cheap */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* One line of the pool: name i of NAMES with a value drawn for this line. */
static int format_line(char *out, size_t cap, int i) {
    static const char *area[] = {"api", "db", "cache", "queue", "auth", "web", "worker", "scheduler"};
    const char *a = area[i % 8];
    switch (i % 10) {
    case 0: case 1: case 2:
        return snprintf(out, cap, "app.%s.requests.m%04d:%d|c", a, i, (int)(rng() % 5) + 1);
    case 3:
        return snprintf(out, cap, "app.%s.events.m%04d:1|c|@0.5", a, i);
    case 4: case 5: case 6:
        return snprintf(out, cap, "app.%s.pool_size.m%04d:%d|g", a, i, (int)(rng() % 1000));
    default:
        return snprintf(out, cap, "app.%s.latency.m%04d:%d.%02d|ms", a, i, (int)(rng() % 500),
                        (int)(rng() % 100));
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT LINES_PER_SEC SECONDS [LINES_PER_DATAGRAM] [NAMES]\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    int per = argc > 5 ? atoi(argv[5]) : 1;
    int names = argc > 6 ? atoi(argv[6]) : 1000;
    if (per < 1 || per > 200 || names < 1 || rate <= 0 || seconds <= 0) {
        fprintf(stderr, "statsd_load: bad arguments\n");
        return 2;
    }

    /* The pool: datagrams of `per` lines each, back to back in one buffer. */
    int ndgrams = POOL_LINES / per;
    char *buf = malloc((size_t)POOL_LINES * 64);
    struct iovec *iov = calloc(ndgrams, sizeof *iov);
    if (!buf || !iov) return 1;
    size_t off = 0;
    int line = 0;
    for (int d = 0; d < ndgrams; d++) {
        iov[d].iov_base = buf + off;
        for (int k = 0; k < per; k++, line++) {
            if (k) buf[off++] = '\n';
            off += format_line(buf + off, 64, line % names);
        }
        iov[d].iov_len = (size_t)(buf + off - (char *)iov[d].iov_base);
    }

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        perror("statsd_load: socket");
        return 1;
    }

    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    double dgram_rate = rate / per;
    uint64_t sent = 0, errors = 0, behind = 0;
    int next = 0;
    double t0 = now(), end = t0 + seconds, t;
    while ((t = now()) < end) {
        double due = (t - t0) * dgram_rate - (double)sent;
        if (due < 1) {
            /* Ahead: sleep until about one batch is due (at least ~20 µs). */
            double wait = (BATCH / 2.0 - due) / dgram_rate;
            if (wait > 0.002) wait = 0.002;
            struct timespec ts = {0, (long)(wait * 1e9)};
            nanosleep(&ts, NULL);
            continue;
        }
        int n = due > BATCH ? BATCH : (int)due;
        if (due > 4 * BATCH) behind++;
        for (int i = 0; i < n; i++) {
            msgs[i].msg_hdr.msg_iov = &iov[(next + i) % ndgrams];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int r = sendmmsg(fd, msgs, n, 0);
        if (r < 0) {
            errors++;
            if (errno != ECONNREFUSED && errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
                perror("statsd_load: sendmmsg");
                return 1;
            }
            continue;
        }
        sent += r;
        next = (next + r) % ndgrams;
    }
    double elapsed = now() - t0;
    printf("{\"lines_sent\": %llu, \"datagrams_sent\": %llu, \"lines_per_datagram\": %d, "
           "\"send_errors\": %llu, \"seconds\": %.6f, \"offered_rate\": %.0f, \"achieved_rate\": %.0f, "
           "\"batches_behind\": %llu}\n",
           (unsigned long long)(sent * per), (unsigned long long)sent, per, (unsigned long long)errors,
           elapsed, rate, sent * per / elapsed, (unsigned long long)behind);
    return 0;
}
