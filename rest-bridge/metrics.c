/*
 * metrics.c - lock-free request counters and histograms; see metrics.h.
 *
 * Statuses are counted in a fixed table of the codes the bridge answers
 * with (plus "other"), so the series set is bounded and known at start.
 */
#include "metrics.h"

#include <stdatomic.h>
#include <stdlib.h>

static const unsigned statuses[] = {200, 400, 404, 405, 409, 413, 415,
                                    422, 429, 500, 501, 503, 504, 0 /* other */};
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]))

/* Histogram bounds in microseconds (Prometheus "le" labels in seconds). */
static const int64_t bounds_us[] = {250,   500,    1000,   2500,   5000,    10000,  25000,
                                    50000, 100000, 250000, 500000, 1000000, 5000000};
#define NBUCKET (sizeof(bounds_us) / sizeof(bounds_us[0]))

typedef struct route_metrics {
    atomic_uint_fast64_t by_status[NSTATUS];
    atomic_uint_fast64_t buckets[NBUCKET + 1]; /* last: +Inf */
    atomic_uint_fast64_t sum_us;
} route_metrics;

struct tsb_metrics {
    const char *(*name)(size_t i);
    size_t nroutes;
    route_metrics routes[]; /* nroutes + 1 */
};

tsb_metrics *tsb_metrics_create(const char *(*route_name)(size_t i), size_t nroutes)
{
    tsb_metrics *m = calloc(1, sizeof(*m) + (nroutes + 1) * sizeof(route_metrics));

    if (m == NULL)
        return NULL;
    m->name = route_name;
    m->nroutes = nroutes;
    return m;
}

void tsb_metrics_destroy(tsb_metrics *m)
{
    free(m);
}

static size_t status_index(unsigned status)
{
    for (size_t i = 0; i + 1 < NSTATUS; i++)
        if (statuses[i] == status)
            return i;
    return NSTATUS - 1;
}

void tsb_metrics_record(tsb_metrics *m, size_t route, unsigned status, int64_t latency_us)
{
    route_metrics *r = &m->routes[route <= m->nroutes ? route : m->nroutes];
    size_t b = 0;

    while (b < NBUCKET && latency_us > bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&r->by_status[status_index(status)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->sum_us, (uint64_t)(latency_us > 0 ? latency_us : 0),
                              memory_order_relaxed);
}

static const char *route_name(const tsb_metrics *m, size_t i)
{
    return i < m->nroutes ? m->name(i) : "unmatched";
}

static void render_counts(const tsb_metrics *m, FILE *out)
{
    fprintf(out, "# HELP tracseq_bridge_http_requests_total HTTP requests answered by this "
                 "bridge instance, by route and status.\n"
                 "# TYPE tracseq_bridge_http_requests_total counter\n");
    for (size_t i = 0; i <= m->nroutes; i++) {
        for (size_t s = 0; s < NSTATUS; s++) {
            uint64_t n = atomic_load_explicit(&m->routes[i].by_status[s], memory_order_relaxed);
            if (n == 0)
                continue;
            if (statuses[s] != 0)
                fprintf(out,
                        "tracseq_bridge_http_requests_total{route=\"%s\",status=\"%u\"} %llu\n",
                        route_name(m, i), statuses[s], (unsigned long long)n);
            else
                fprintf(out,
                        "tracseq_bridge_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                        route_name(m, i), (unsigned long long)n);
        }
    }
}

static void render_histogram(const tsb_metrics *m, size_t i, FILE *out)
{
    const route_metrics *r = &m->routes[i];
    uint64_t cumulative = 0;

    for (size_t b = 0; b <= NBUCKET; b++) {
        cumulative += atomic_load_explicit(&r->buckets[b], memory_order_relaxed);
        if (b < NBUCKET)
            fprintf(out,
                    "tracseq_bridge_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                    "%llu\n",
                    route_name(m, i), (double)bounds_us[b] / 1e6, (unsigned long long)cumulative);
        else
            fprintf(out,
                    "tracseq_bridge_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                    "%llu\n",
                    route_name(m, i), (unsigned long long)cumulative);
    }
    fprintf(out, "tracseq_bridge_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
            route_name(m, i), (double)atomic_load_explicit(&r->sum_us, memory_order_relaxed) / 1e6);
    fprintf(out, "tracseq_bridge_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
            route_name(m, i), (unsigned long long)cumulative);
}

void tsb_metrics_render(const tsb_metrics *m, FILE *out)
{
    render_counts(m, out);
    fprintf(out, "# HELP tracseq_bridge_http_request_duration_seconds Time from a request's "
                 "headers to its answer, by route.\n"
                 "# TYPE tracseq_bridge_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i <= m->nroutes; i++)
        render_histogram(m, i, out);
}
