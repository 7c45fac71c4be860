package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/snakepit-go/snakepit/jetstream"
)

// Health is what an operator or a probe needs to know of the agent.
type Health struct {
	NATSConnected bool   `json:"nats_connected"`
	NATSURL       string `json:"nats_url"`
	PoolsReady    bool   `json:"pools_ready"`
	Draining      bool   `json:"draining"`
}

// Health reports the agent's state now.
func (h *Host) Health() Health {
	hl := Health{NATSConnected: h.nc.IsConnected(), NATSURL: h.nc.ConnectedUrlRedacted(), PoolsReady: true}
	if h.agent != nil {
		for _, p := range h.agent.Pools() {
			hl.PoolsReady = hl.PoolsReady && p.Ready()
		}
	}
	select {
	case <-h.done:
		hl.Draining = true
	default:
	}
	return hl
}

// Healthy is true when the agent is connected and every pool has its workers.
func (hl Health) Healthy() bool { return hl.NATSConnected && hl.PoolsReady && !hl.Draining }

// serveHealth answers GET /healthz on addr: 200 with the Health as JSON when
// healthy, 503 otherwise. It stops with the host.
func (h *Host) serveHealth(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health endpoint on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		hl := h.Health()
		w.Header().Set("Content-Type", "application/json")
		if !hl.Healthy() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(hl)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Warn().Err(err).Msg("health endpoint stopped")
		}
	}()
	go func() {
		<-h.done
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	return nil
}

// reprovision opens the buckets again after a reconnect: a server that lost
// its store has none, and every lease and agent record starts over.
func (h *Host) reprovision() {
	h.reprovisionMu.Lock()
	defer h.reprovisionMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cfg := range []jetstream.BucketConfig{
		jetstream.SessionsConfig(h.opts.KVReplicas), jetstream.AgentsConfig(h.opts.KVReplicas),
	} {
		if _, err := jetstream.Open(ctx, h.nc, cfg); err != nil {
			h.log.Warn().Err(err).Str("bucket", cfg.Name).Msg("bucket not provisioned after reconnect")
		}
	}
	if h.fleet == nil {
		return
	}
	if err := h.fleet.sessions.Rewatch(ctx); err != nil {
		h.log.Warn().Err(err).Str("bucket", jetstream.SessionsBucket).Msg("lease watch not restarted after reconnect")
	}
	if err := h.fleet.registry.Rewatch(ctx); err != nil {
		h.log.Warn().Err(err).Str("bucket", jetstream.AgentsBucket).Msg("registry watch not restarted after reconnect")
	}
}
