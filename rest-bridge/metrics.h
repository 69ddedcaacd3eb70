/*
 * metrics.h - the bridge's own request counters and latency histograms,
 * per route and HTTP status, rendered in the Prometheus text format.
 *
 * One tsb_metrics per bridge process, shared by every HTTP thread: all
 * counters are relaxed atomics, so recording never takes a lock. Figures are
 * this bridge instance's since it started.
 */
#ifndef TSB_BRIDGE_METRICS_H
#define TSB_BRIDGE_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct tsb_metrics tsb_metrics;

/*
 * route_name(i): the label of route i < nroutes (a string that outlives the
 * metrics), e.g. "POST /api/v1/events/publish"; index nroutes counts
 * unmatched requests.
 */
tsb_metrics *tsb_metrics_create(const char *(*route_name)(size_t i), size_t nroutes);
void tsb_metrics_destroy(tsb_metrics *m); /* NULL is a no-op */

/* Counts one answered request; route == nroutes for an unmatched one. */
void tsb_metrics_record(tsb_metrics *m, size_t route, unsigned status, int64_t latency_us);

/* Writes every series with HELP and TYPE lines to out. */
void tsb_metrics_render(const tsb_metrics *m, FILE *out);

#endif
