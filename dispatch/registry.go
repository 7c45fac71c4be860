package dispatch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/snakepit-go/snakepit/jetstream"
	"github.com/snakepit-go/snakepit/schemas"
)

// registryTTL is how long an agent's record lives unless renewed; an agent that
// died is taken as gone this long after its last renewal.
const registryTTL = 6 * time.Second

// Registry keeps this agent's record in the agents bucket and follows every
// other agent's, so the fleet knows who is alive.
type Registry struct {
	kv     *jetstream.KV
	self   func() *schemas.AgentRecord
	id     string
	log    zerolog.Logger
	stopW  func()
	cancel context.CancelFunc
	done   chan struct{}
	// stopOnce makes Stop idempotent.
	stopOnce sync.Once

	mu   sync.Mutex
	live map[string]*schemas.AgentRecord
	rev  uint64
	// announced: this agent's record is written and renewed (Announce).
	announced bool
}

var recordJSON = protojson.MarshalOptions{UseProtoNames: true}

// StartRegistry follows the agents bucket. The agent's own record is written by
// Announce, once the agent answers fleet queries: a client counts the answers it
// waits for from the records, so a record must mean an agent that answers.
func StartRegistry(ctx context.Context, kv *jetstream.KV, id string, self func() *schemas.AgentRecord,
	log zerolog.Logger) (*Registry, error) {
	r := &Registry{kv: kv, self: self, id: id, log: log, live: map[string]*schemas.AgentRecord{},
		done: make(chan struct{})}
	ready := make(chan struct{})
	var once sync.Once
	stop, err := kv.Watch(ctx, r.apply, func() { once.Do(func() { close(ready) }) })
	if err != nil {
		return nil, err
	}
	<-ready
	r.stopW = stop
	return r, nil
}

// Announce writes this agent's record, then renews it until Stop.
func (r *Registry) Announce(ctx context.Context) error {
	if err := r.publish(ctx); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.Background())
	r.mu.Lock()
	r.announced, r.cancel = true, cancel
	r.mu.Unlock()
	go r.renewLoop(rctx)
	return nil
}

func (r *Registry) apply(e jetstream.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	applyRecord(r.live, e)
}

func applyRecord(live map[string]*schemas.AgentRecord, e jetstream.Entry) {
	if e.Deleted {
		delete(live, e.Key)
		return
	}
	rec := &schemas.AgentRecord{}
	if protojson.Unmarshal(e.Value, rec) == nil {
		live[e.Key] = rec
	}
}

// publish writes the record: a create the first time, a compare-and-swap after.
func (r *Registry) publish(ctx context.Context) error {
	rec := r.self()
	rec.RenewedUnixMs = time.Now().UnixMilli()
	b, _ := recordJSON.Marshal(rec)
	r.mu.Lock()
	rev := r.rev
	r.mu.Unlock()
	var err error
	if rev == 0 {
		rev, err = r.kv.Create(ctx, r.id, b, registryTTL)
		if errors.Is(err, jetstream.ErrKeyExists) {
			// A previous run of this agent: take its record over.
			var e jetstream.Entry
			if e, err = r.kv.Get(ctx, r.id); err == nil {
				rev, err = r.kv.Update(ctx, r.id, b, e.Revision, registryTTL)
			}
		}
	} else {
		rev, err = r.kv.Update(ctx, r.id, b, rev, registryTTL)
	}
	if err != nil {
		r.mu.Lock()
		r.rev = 0 // start over with a create (or takeover) next time
		r.mu.Unlock()
		return err
	}
	r.mu.Lock()
	r.rev = rev
	r.mu.Unlock()
	return nil
}

func (r *Registry) renewLoop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(registryTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.publish(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn().Err(err).Str("bucket", jetstream.AgentsBucket).Msg("agent record renewal failed")
			}
		}
	}
}

// Rewatch republishes this agent's record and starts the watch over with an
// empty view, after a reconnect: the old watch may be dead and the server may
// have lost the bucket.
//
// The old view keeps answering Alive until the new watch has loaded every
// record: an empty view, even for a moment, would make every agent look gone
// and let sessions be taken over from live ones.
func (r *Registry) Rewatch(ctx context.Context) error {
	r.mu.Lock()
	r.rev = 0
	stop, announced := r.stopW, r.announced
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
	if announced {
		if err := r.publish(ctx); err != nil {
			return err
		}
	}
	fresh := map[string]*schemas.AgentRecord{}
	apply := func(e jetstream.Entry) {
		r.mu.Lock()
		defer r.mu.Unlock()
		applyRecord(fresh, e)
	}
	ready := make(chan struct{})
	var once sync.Once
	w, err := r.kv.Watch(ctx, apply, func() {
		once.Do(func() {
			r.mu.Lock()
			r.live = fresh
			r.mu.Unlock()
			close(ready)
		})
	})
	if err != nil {
		return err
	}
	<-ready
	r.mu.Lock()
	r.stopW = w
	r.mu.Unlock()
	return nil
}

// Alive reports whether an agent's record is live.
func (r *Registry) Alive(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.live[id]
	return ok
}

// Agents returns every live agent's record.
func (r *Registry) Agents() []*schemas.AgentRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*schemas.AgentRecord, 0, len(r.live))
	for _, rec := range r.live {
		out = append(out, rec)
	}
	return out
}

// Stop ends renewals and removes this agent's record; calling it again does
// nothing.
func (r *Registry) Stop() {
	r.stopOnce.Do(r.stop)
}

func (r *Registry) stop() {
	r.mu.Lock()
	stopW, renew := r.stopW, r.cancel
	r.mu.Unlock()
	if renew != nil {
		renew()
		<-r.done
	}
	stopW()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.kv.Delete(ctx, r.id, 0)
}
