/* A sequential new-flow client, so that the client's own cost hardly bounds the rate.
 *
 * Same output as workload.py's "connect" and "rate" (one JSON object). Built on the
 * host by topology.flowclient() (gcc -O2 -static) and bind-mounted into the benchmark
 * containers; without a compiler the benchmark falls back to workload.py.
 *
 *   flowclient connect HOST PORT N      N sequential connect() timings
 *   flowclient rate HOST PORT SECONDS   flows/s for SECONDS
 *
 * Each connection is closed with a RST (SO_LINGER 0): no TIME_WAIT, no port shortage.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LATE_S 0.2
#define TIMEOUT_S 3

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Seconds connect() took, or -1 on failure (socket creation is not timed). */
static double connect_once(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct linger lg = {1, 0};
    struct timeval tv = {TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    double t0 = now();
    int rc = connect(fd, (const struct sockaddr *)addr, sizeof *addr);
    double took = now() - t0;
    close(fd);
    return rc == 0 ? took : -1;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, long n, double q) {
    if (n == 0) return 0;
    long i = (long)(q / 100.0 * (n - 1) + 0.5);
    if (i >= n) i = n - 1;
    return v[i];
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: flowclient connect|rate HOST PORT N|SECONDS\n");
        return 2;
    }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[2]);
        return 2;
    }
    if (strcmp(argv[1], "connect") == 0) {
        long n = atol(argv[4]), ok = 0, errors = 0;
        double *lat = malloc(sizeof(double) * (n > 0 ? n : 1)), sum = 0;
        for (long i = 0; i < (n < 50 ? n : 50); i++) connect_once(&addr); /* warm-up */
        for (long i = 0; i < n; i++) {
            double t = connect_once(&addr);
            if (t < 0) errors++;
            else { lat[ok++] = t * 1e6; sum += t * 1e6; }
        }
        qsort(lat, ok, sizeof(double), cmp);
        printf("{\"n\": %ld, \"ok\": %ld, \"errors\": %ld, \"p50_us\": %.3f, \"p90_us\": %.3f, "
               "\"p99_us\": %.3f, \"max_us\": %.3f, \"mean_us\": %.3f, \"client\": \"c\"}\n",
               n, ok, errors, pct(lat, ok, 50), pct(lat, ok, 90), pct(lat, ok, 99),
               ok ? lat[ok - 1] : 0, ok ? sum / ok : 0);
        return 0;
    }
    if (strcmp(argv[1], "rate") == 0) {
        double seconds = atof(argv[4]), worst = 0;
        long ok = 0, errors = 0, late = 0;
        double start = now(), end = start + seconds, t = start;
        while (t < end) {
            double took = connect_once(&addr);
            if (took < 0) errors++;
            else {
                ok++;
                if (took > worst) worst = took;
                if (took > LATE_S) late++;
            }
            t = now();
        }
        double elapsed = t - start;
        printf("{\"flows\": %ld, \"errors\": %ld, \"late\": %ld, \"seconds\": %.6f, "
               "\"flows_per_s\": %.3f, \"max_ms\": %.3f, \"client\": \"c\"}\n",
               ok, errors, late, elapsed, ok / elapsed, worst * 1e3);
        return 0;
    }
    fprintf(stderr, "unknown command %s\n", argv[1]);
    return 2;
}
