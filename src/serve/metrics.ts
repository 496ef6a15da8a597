/**
 * Prometheus metrics of the HTTP handler (prom-client), one Registry per handler so two
 * services in one process never share or clash.
 *
 *   rapm_http_requests_total{route,method,status}        counter (status "aborted": the client left first;
 *                                                        "408": its body timed out; "shutdown": cut by graceMs)
 *   rapm_http_errors_total{route,status,code}            counter of error replies by code: a 503 RAPM_IO (the
 *                                                        neighbour source's engine is down) apart from a 503
 *                                                        RAPM_BUSY, and 500s (bugs) apart from both
 *   rapm_http_request_duration_seconds{route}            histogram, from the request to the last byte written
 *   rapm_http_in_flight_requests                         gauge
 *   rapm_http_buffered_body_bytes                        gauge, body bytes held across all requests
 *   rapm_batch_rows / rapm_batch_requests                histograms of the micro-batches dispatched
 *   rapm_batch_wait_seconds                              histogram, how long the oldest request of a batch waited
 *   rapm_batch_seconds                                   histogram, how long a batch ran (search and split)
 *   rapm_fast_path_queries / rapm_fast_path_redone       gauges, the datastore's fastPathStats (queries the fast
 *                                                        path searched since load; of those redone by the exact scan)
 *   rapm_queue_rows / rapm_queue_requests                gauges, waiting for a batch (0 when batching is off)
 *   nodejs_eventloop_lag_{min,max,mean,p50,p90,p99}_seconds, process_* and nodejs_*:
 *                                                        prom-client's default metrics (event-loop delay from
 *                                                        perf_hooks.monitorEventLoopDelay)
 */
import client from 'prom-client';
import type { MicroBatcher } from './micro-batcher.js';

/** The fast-path counters read at scrape time (Datastore.fastPathStats). */
export type FastPathStatsReader = () => { queries: number; redone: number };

export interface HandlerMetrics {
  registry: client.Registry;
  requests: client.Counter<'route' | 'method' | 'status'>;
  errors: client.Counter<'route' | 'status' | 'code'>;
  duration: client.Histogram<'route'>;
  inFlight: client.Gauge;
  buffered: client.Gauge;
  /** Stop observing the batcher. */
  close(): void;
}

export function createMetrics(batcher: MicroBatcher | null, read: { inFlight: () => number; buffered: () => number; fastPath?: FastPathStatsReader }): HandlerMetrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10 });
  const requests = new client.Counter({ name: 'rapm_http_requests_total', help: 'HTTP requests by route, method and status', labelNames: ['route', 'method', 'status'] as const, registers: [registry] });
  const errors = new client.Counter({ name: 'rapm_http_errors_total', help: 'Error replies by route, status and code (503 RAPM_IO: the neighbour source is unavailable)', labelNames: ['route', 'status', 'code'] as const, registers: [registry] });
  const duration = new client.Histogram({
    name: 'rapm_http_request_duration_seconds',
    help: 'HTTP request latency by route (request received to response written)',
    labelNames: ['route'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const inFlight = new client.Gauge({ name: 'rapm_http_in_flight_requests', help: 'Requests being handled', registers: [registry], collect() { this.set(read.inFlight()); } });
  const buffered = new client.Gauge({ name: 'rapm_http_buffered_body_bytes', help: 'Request body bytes held in memory across all requests', registers: [registry], collect() { this.set(read.buffered()); } });
  const batchRows = new client.Histogram({ name: 'rapm_batch_rows', help: 'Query rows per dispatched micro-batch', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], registers: [registry] });
  const batchRequests = new client.Histogram({ name: 'rapm_batch_requests', help: 'Requests per dispatched micro-batch', buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers: [registry] });
  const batchWait = new client.Histogram({ name: 'rapm_batch_wait_seconds', help: 'Wait of the oldest request of a micro-batch before dispatch', buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1], registers: [registry] });
  const batchSeconds = new client.Histogram({ name: 'rapm_batch_seconds', help: 'Run time of a micro-batch: the search and the split of its results', buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry] });
  if (read.fastPath) {
    const fast = read.fastPath;
    new client.Gauge({ name: 'rapm_fast_path_queries', help: 'Queries the fast search path served since the datastore was loaded', registers: [registry], collect() { this.set(fast().queries); } });
    new client.Gauge({ name: 'rapm_fast_path_redone', help: 'Fast-path queries redone by the exact scan (no proof from the first pass)', registers: [registry], collect() { this.set(fast().redone); } });
  }
  new client.Gauge({ name: 'rapm_queue_rows', help: 'Query rows waiting for a micro-batch', registers: [registry], collect() { this.set(batcher?.queuedRows ?? 0); } });
  new client.Gauge({ name: 'rapm_queue_requests', help: 'Requests waiting for a micro-batch', registers: [registry], collect() { this.set(batcher?.queuedRequests ?? 0); } });
  const stop = batcher?.observe((e) => {
    batchRows.observe(e.rows);
    batchRequests.observe(e.requests);
    batchWait.observe(e.waitMs / 1000);
  });
  const stopDone = batcher?.observeDone((e) => batchSeconds.observe(e.runMs / 1000));
  return {
    registry,
    requests,
    errors,
    duration,
    inFlight,
    buffered,
    close() {
      stop?.();
      stopDone?.();
    },
  };
}
