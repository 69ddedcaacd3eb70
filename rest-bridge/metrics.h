/*
 * metrics.h - the bridge's own request counters and latency histograms,
 * per route and HTTP status, rendered in the Prometheus text format.
 *
 * One tse_metrics per bridge process, shared by every HTTP thread: all
 * counters are relaxed atomics, so recording never takes a lock. Figures are
 * this bridge instance's since it started.
 */
#ifndef TSE_BRIDGE_METRICS_H
#define TSE_BRIDGE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct tse_metrics tse_metrics;

/*
 * route_names: nroutes labels (borrowed, must outlive the metrics), e.g.
 * "POST /api/v1/events/publish"; index nroutes counts unmatched requests.
 */
tse_metrics *tse_metrics_create(const char *const *route_names, size_t nroutes);
void tse_metrics_destroy(tse_metrics *m); /* NULL is a no-op */

/* Counts one answered request; route == nroutes for an unmatched one. */
void tse_metrics_record(tse_metrics *m, size_t route, unsigned status, int64_t latency_us);

/* Writes every series with HELP and TYPE lines to out. */
void tse_metrics_render(const tse_metrics *m, FILE *out);

#endif
