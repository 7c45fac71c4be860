package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/dispatch"
)

// The product's pool under load: 2 workers.
const (
	benchPool    = "default"
	benchWorkers = 2
	callTimeout  = 10 * time.Second
)

// pingArgs are the arguments of every measured ping.
var pingArgs = json.RawMessage(`{"message":"hi"}`)

// rig is the agent under test, the connections to its embedded server, and the
// floors that run beside it on the same server.
type rig struct {
	o   options
	log zerolog.Logger
	res *results

	agent  *agentProc
	conns  []*nats.Conn
	client *dispatch.Client
	// floorNC makes the floors' requests; echo answers them.
	floorNC *nats.Conn
	echo    *framePool
	// direct is the real worker runtime talked to over its pipes, no agent.
	direct *framePool
	subs   []*nats.Subscription
	// workers are the pids of the agent's workers.
	workers []int
}

// startRig starts the agent with benchWorkers workers, connects, takes the idle
// RSS and starts the floors with the frame sizes of a real ping.
func startRig(ctx context.Context, o options, root, stateDir, runtimeDir string, res *results,
	log zerolog.Logger) (*rig, error) {
	cfg, err := poolConfig(root, "bench.yaml", o.python, benchWorkers)
	if err != nil {
		return nil, err
	}
	r := &rig{o: o, log: log, res: res}
	if r.agent, err = startAgent(ctx, o.agentBin, stateDir, cfg, log); err != nil {
		return nil, err
	}
	if err := r.connect(); err != nil {
		r.close()
		return nil, err
	}
	r.res.rssIdle = r.idleRSS(500 * time.Millisecond)
	if err := r.startFloors(ctx, root, runtimeDir); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// connect opens one connection for the product's client, one for the floors'
// client and one for each floor responder, as separate processes would.
func (r *rig) connect() error {
	names := []string{"product client", "floor client", "echo responder", "composed responder"}
	for _, n := range names {
		nc, err := nats.Connect(r.agent.url, nats.Name("snakebench "+n))
		if err != nil {
			return fmt.Errorf("connect %s to %s: %w", n, r.agent.url, err)
		}
		r.conns = append(r.conns, nc)
	}
	r.client = dispatch.NewClient(r.conns[0])
	r.floorNC = r.conns[1]
	return nil
}

// idleRSS is the largest RSS of the agent over d with no traffic.
func (r *rig) idleRSS(d time.Duration) int64 {
	s := startSampler(50*time.Millisecond, r.agent.rss)
	time.Sleep(d)
	return s.Stop()
}

func (r *rig) startFloors(ctx context.Context, root, runtimeDir string) error {
	reply, err := r.client.Call(ctx, benchPool, "ping", pingArgs,
		dispatch.WithTimeout(callTimeout))
	if err != nil {
		return fmt.Errorf("first ping: %w", err)
	}
	shape, err := newFrameShape("ping", pingArgs, reply.Data)
	if err != nil {
		return err
	}
	if r.echo, err = startEchoPool(r.o.python, root, benchWorkers, shape); err != nil {
		return err
	}
	if r.direct, err = startRuntimePool(r.o.python, runtimeDir, benchWorkers, shape); err != nil {
		return err
	}
	echo, err := serveEcho(r.conns[2], reply.Data)
	if err != nil {
		return err
	}
	composed, err := serveComposed(ctx, r.conns[3], r.echo)
	if err != nil {
		return err
	}
	r.subs = append(r.subs, echo, composed)
	r.workers, err = r.workerPIDs(ctx)
	return err
}

// close stops the floors, the connections and the agent; an agent that does not
// stop cleanly is noted in the report.
func (r *rig) close() {
	for _, s := range r.subs {
		_ = s.Unsubscribe()
	}
	for _, p := range []*framePool{r.echo, r.direct} {
		if p != nil {
			p.close()
		}
	}
	for _, nc := range r.conns {
		nc.Close()
	}
	if r.agent == nil {
		return
	}
	r.res.warnings = append(r.res.warnings, r.agent.warningLines()...)
	if err := r.agent.stop(20 * time.Second); err != nil {
		r.res.notes = append(r.res.notes, err.Error())
		r.log.Warn().Err(err).Msg("agent did not stop cleanly")
	}
}

// plain is one ping through the Go client.
func (r *rig) plain(ctx context.Context) error {
	_, err := r.client.Call(ctx, benchPool, "ping", pingArgs, dispatch.WithTimeout(callTimeout))
	return err
}

// session returns a caller that pings within session id.
func (r *rig) session(id string) caller {
	return func(ctx context.Context) error {
		_, err := r.client.Call(ctx, benchPool, "ping", pingArgs,
			dispatch.WithTimeout(callTimeout), dispatch.WithSession(id))
		return err
	}
}

// pipe is one round trip to a bare Python echo child, no NATS.
func (r *rig) pipe(ctx context.Context) error {
	_, err := r.echo.call(ctx)
	return err
}

// runtime is one ping on the real worker runtime over its pipes, no NATS.
func (r *rig) runtime(ctx context.Context) error {
	_, err := r.direct.call(ctx)
	return err
}

// workerPIDs lists the pids of the agent's workers, as it reports them.
func (r *rig) workerPIDs(ctx context.Context) ([]int, error) {
	reports, err := r.client.Reports(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	var pids []int
	for _, rep := range reports {
		for _, w := range rep.GetWorkers() {
			pids = append(pids, int(w.GetPid()))
		}
	}
	if len(pids) == 0 {
		return nil, errors.New("list workers: no worker reported")
	}
	return pids, nil
}

// pythonRSS reads the RSS of every worker of the pool and of one echo child.
func (r *rig) pythonRSS(ctx context.Context) error {
	for _, pid := range r.workers {
		rss, err := readRSS(pid)
		if err != nil {
			return err
		}
		r.res.workerRSS = append(r.res.workerRSS, rss)
	}
	var err error
	r.res.echoRSS, err = readRSS(r.echo.children[0].pid())
	return err
}

// streams measures the bare publish rate of 256 KiB chunks and, if the agent
// streams yet, the product's.
func (r *rig) streams(ctx context.Context) error {
	rate, err := measurePublish(ctx, r.conns[2], r.floorNC, streamChunks, chunkSize, streamWindow)
	if err != nil {
		return err
	}
	r.res.publish = rate
	r.res.stream = measureStream(ctx, r.client, benchPool, streamChunks, chunkSize)
	if r.res.stream.Measured {
		ms, err := timeChunkMaking(ctx, r.o.python, chunkSize)
		if err != nil {
			return err
		}
		r.res.stream.AdapterMsPerChunk = *num(ms)
	}
	r.res.leases = leaseRecords(r.floorNC)
	return nil
}

func stateDirOf(root string) string { return filepath.Join(root, "state") }
