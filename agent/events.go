package agent

import "github.com/snakepit-go/snakepit/telemetry"

// Telemetry events of the pools. Metadata always has pool and worker_id (or
// pool alone for queue events); handlers run on the emitting goroutine, so
// the pool never emits while holding its lock.
const (
	EventWorkerStarted    = "snakepit.pool.worker.started"
	EventWorkerExited     = "snakepit.pool.worker.exited"
	EventWorkerRestarting = "snakepit.pool.worker.restarting"
	EventWorkerRecycled   = "snakepit.pool.worker.recycled"
	EventQueueTimeout     = "snakepit.pool.queue_timeout"
	EventPoolSaturated    = "snakepit.pool.saturated"
)

func emitWorker(name, pool string, w *worker, extra map[string]any) {
	meta := map[string]any{"pool": pool, "worker_id": w.id, "pid": w.pid, "incarnation": w.incarnation}
	for k, v := range extra {
		meta[k] = v
	}
	telemetry.Emit(name, nil, meta)
}

func emitPool(name, pool string) {
	telemetry.Emit(name, map[string]float64{"count": 1}, map[string]any{"pool": pool})
}
