package snakepit

import (
	"context"
	"fmt"

	"github.com/snakepit-go/snakepit/agent"
	"github.com/snakepit-go/snakepit/schemas"
)

// Stats is the reference's stats map.
type Stats struct {
	// Requests the pools received, including those that ended in an error.
	Requests int `json:"requests"`
	// Queued requests are waiting for a worker right now.
	Queued int `json:"queued"`
	// Errors is how many requests ended in an error.
	Errors int `json:"errors"`
	// QueueTimeouts waited in the queue past pool_queue_timeout.
	QueueTimeouts int `json:"queue_timeouts"`
	// PoolSaturated requests were refused because the queue was full.
	PoolSaturated int `json:"pool_saturated"`
	// Workers is the number of worker slots.
	Workers int `json:"workers"`
	// Available workers are ready and idle.
	Available int `json:"available"`
	// Busy workers are running a request.
	Busy int `json:"busy"`
}

func (s *Stats) add(p *schemas.PoolStats) {
	s.Requests += int(p.Requests)
	s.Queued += int(p.Queued)
	s.Errors += int(p.Errors)
	s.QueueTimeouts += int(p.QueueTimeouts)
	s.PoolSaturated += int(p.PoolSaturated)
	s.Workers += int(p.Workers)
	s.Available += int(p.Available)
	s.Busy += int(p.Busy)
}

// GetStats sums the stats of every pool the runtime reaches: an embedded
// runtime's own agent, or every agent of a remote fleet that answers.
func (rt *Runtime) GetStats(ctx context.Context) (Stats, error) {
	pools, err := rt.poolStats(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("get stats: %w", err)
	}
	var s Stats
	for _, p := range pools {
		s.add(p)
	}
	return s, nil
}

// GetPoolStats returns the stats of the named pool (summed over the agents
// that serve it), or a *Error with reason pool_not_found.
func (rt *Runtime) GetPoolStats(ctx context.Context, pool string) (Stats, error) {
	pools, err := rt.poolStats(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("get stats of pool %s: %w", pool, err)
	}
	var s Stats
	found := false
	for _, p := range pools {
		if p.Pool == pool {
			s.add(p)
			found = true
		}
	}
	if !found {
		return Stats{}, poolNotFound(pool)
	}
	return s, nil
}

// ListWorkers returns the id of every worker the runtime reaches, pool by pool.
func (rt *Runtime) ListWorkers(ctx context.Context) ([]string, error) {
	return rt.workerIDs(ctx, "")
}

// ListPoolWorkers returns the worker ids of the named pool, or a *Error with
// reason pool_not_found.
func (rt *Runtime) ListPoolWorkers(ctx context.Context, pool string) ([]string, error) {
	if pool == "" {
		return nil, poolNotFound(pool)
	}
	return rt.workerIDs(ctx, pool)
}

// workerIDs lists the workers of pool, or of every pool when pool is empty.
func (rt *Runtime) workerIDs(ctx context.Context, pool string) ([]string, error) {
	infos, pools, err := rt.workerInfos(ctx)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	if pool != "" && !contains(pools, pool) {
		return nil, poolNotFound(pool)
	}
	ids := []string{}
	for _, w := range infos {
		if pool == "" || w.Pool == pool {
			ids = append(ids, w.Id)
		}
	}
	return ids, nil
}

// poolStats reads the embedded agent's pools directly, or asks the fleet.
func (rt *Runtime) poolStats(ctx context.Context) ([]*schemas.PoolStats, error) {
	if rt.stopped() {
		return nil, ErrNotStarted
	}
	if rt.host != nil {
		var out []*schemas.PoolStats
		for _, p := range rt.localPools() {
			out = append(out, p.Stats())
		}
		return out, nil
	}
	reports, err := rt.client.Reports(ctx, false)
	if err != nil {
		return nil, err
	}
	var out []*schemas.PoolStats
	for _, r := range reports {
		out = append(out, r.Pools...)
	}
	return out, nil
}

// workerInfos returns every worker and the names of every pool.
func (rt *Runtime) workerInfos(ctx context.Context) ([]*schemas.WorkerInfo, []string, error) {
	if rt.stopped() {
		return nil, nil, ErrNotStarted
	}
	var infos []*schemas.WorkerInfo
	var pools []string
	if rt.host != nil {
		for _, p := range rt.localPools() {
			infos = append(infos, p.Workers()...)
			pools = append(pools, p.Name())
		}
		return infos, pools, nil
	}
	reports, err := rt.client.Reports(ctx, true)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range reports {
		infos = append(infos, r.Workers...)
		for _, p := range r.Pools {
			pools = append(pools, p.Pool)
		}
	}
	return infos, pools, nil
}

// localPools are the embedded agent's running pools: none when
// pooling_enabled is false, since the agent then starts none.
func (rt *Runtime) localPools() []*agent.Pool {
	if rt.host == nil || !rt.cfg.PoolingEnabled {
		return nil
	}
	return rt.host.Agent().Pools()
}

func poolNotFound(pool string) *Error {
	return schemas.NewError(CategoryPool, ReasonPoolNotFound, "no pool named %q", pool)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// GetStats is Runtime.GetStats on the process-wide runtime: the aggregate of
// all its pools.
func GetStats(ctx context.Context) (Stats, error) {
	rt, err := Current()
	if err != nil {
		return Stats{}, fmt.Errorf("get stats: %w", err)
	}
	return rt.GetStats(ctx)
}

// GetPoolStats is Runtime.GetPoolStats on the process-wide runtime.
func GetPoolStats(ctx context.Context, pool string) (Stats, error) {
	rt, err := Current()
	if err != nil {
		return Stats{}, fmt.Errorf("get stats of pool %s: %w", pool, err)
	}
	return rt.GetPoolStats(ctx, pool)
}

// ListWorkers is Runtime.ListWorkers on the process-wide runtime.
func ListWorkers(ctx context.Context) ([]string, error) {
	rt, err := Current()
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return rt.ListWorkers(ctx)
}

// ListPoolWorkers is Runtime.ListPoolWorkers on the process-wide runtime.
func ListPoolWorkers(ctx context.Context, pool string) ([]string, error) {
	rt, err := Current()
	if err != nil {
		return nil, fmt.Errorf("list workers of pool %s: %w", pool, err)
	}
	return rt.ListPoolWorkers(ctx, pool)
}
