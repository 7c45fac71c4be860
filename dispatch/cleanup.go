package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/snakepit-go/snakepit/schemas"
)

// Cleanup results, as in the reference's cleanup/0.
const (
	CleanupOK      = "ok"
	CleanupTimeout = "timeout"
)

// DefaultCleanupTimeout is how long an agent lets its workers finish before it
// terminates them, when the request names no timeout.
const DefaultCleanupTimeout = 5 * time.Second

// cleanupSlack is how much longer than the timeout a client waits for the
// answers: terminating takes up to 2 s more, and the replacement start.
const cleanupSlack = 5 * time.Second

// Cleaner is a pool whose worker processes the cleanup endpoint can end; see
// agent.Pool.Cleanup.
type Cleaner interface {
	Cleanup(ctx context.Context, timeout time.Duration) []*schemas.EndedWorker
}

// cleanupBody is the body of a cleanup request.
type cleanupBody struct {
	// AgentID limits the cleanup to one agent; empty means every agent.
	AgentID   string `json:"agent_id,omitempty"`
	TimeoutMs int64  `json:"timeout_ms,omitempty"`
}

// addCleanupEndpoint answers snakepit.ctl.cleanup: the agent ends its worker
// processes and reports them. An agent not named in the request stays silent.
func (s *Server) addCleanupEndpoint(svc micro.Service) error {
	h := func(r micro.Request) {
		var body cleanupBody
		if len(r.Data()) > 0 && json.Unmarshal(r.Data(), &body) != nil {
			_ = r.Error("400", "cleanup: want {\"agent_id\": ..., \"timeout_ms\": ...}", nil)
			return
		}
		if body.AgentID != "" && body.AgentID != s.opts.AgentID {
			return
		}
		// Handlers run one at a time; the cleanup takes seconds.
		s.inflight.Add(1)
		go func() {
			defer s.inflight.Done()
			b, _ := reportJSON.Marshal(s.cleanup(time.Duration(body.TimeoutMs) * time.Millisecond))
			_ = r.Respond(b)
		}()
	}
	err := svc.AddEndpoint("cleanup", micro.HandlerFunc(h),
		micro.WithEndpointSubject(s.subj.Control("cleanup")),
		micro.WithEndpointQueueGroupDisabled())
	if err != nil {
		return fmt.Errorf("add control endpoint cleanup: %w", err)
	}
	return nil
}

// cleanup ends the workers of every pool at once.
func (s *Server) cleanup(timeout time.Duration) *schemas.CleanupReport {
	if timeout <= 0 {
		timeout = DefaultCleanupTimeout
	}
	rep := &schemas.CleanupReport{AgentId: s.opts.AgentID, Result: CleanupOK}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range s.pools {
		c, ok := p.(Cleaner)
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ended := c.Cleanup(s.ctx, timeout)
			mu.Lock()
			rep.Ended = append(rep.Ended, ended...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, e := range rep.Ended {
		if !e.InTime {
			rep.Result = CleanupTimeout
		}
	}
	sort.Slice(rep.Ended, func(i, j int) bool { return rep.Ended[i].WorkerId < rep.Ended[j].WorkerId })
	return rep
}

// Cleanup asks every agent (or only agentID) to end its worker processes,
// letting them finish what they run for up to timeout (DefaultCleanupTimeout
// when zero), and returns each agent's report. The agents start fresh workers
// in their place. It fails when no agent (or not agentID) answers the roll
// call, and reports the agents that did not answer the cleanup in time.
func (c *Client) Cleanup(ctx context.Context, agentID string,
	timeout time.Duration) ([]*schemas.CleanupReport, error) {
	if timeout <= 0 {
		timeout = DefaultCleanupTimeout
	}
	want, err := c.rollCall(ctx, agentID)
	if err != nil {
		return nil, err
	}
	inbox := c.nc.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	defer sub.Unsubscribe()
	body, _ := json.Marshal(cleanupBody{AgentID: agentID, TimeoutMs: timeout.Milliseconds()})
	if err := c.nc.PublishRequest(c.subj.Control("cleanup"), inbox, body); err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+cleanupSlack)
	defer cancel()
	return collectCleanups(ctx, sub, want)
}

// rollCall lists the agents a cleanup must hear from.
func (c *Client) rollCall(ctx context.Context, agentID string) (map[string]bool, error) {
	reports, err := c.Reports(ctx, false)
	if err != nil {
		return nil, fmt.Errorf("cleanup: %w", err)
	}
	want := map[string]bool{}
	for _, r := range reports {
		if agentID == "" || r.AgentId == agentID {
			want[r.AgentId] = true
		}
	}
	if len(want) == 0 {
		return nil, schemas.NewError(schemas.CategoryPool, schemas.ReasonPoolNotFound,
			"cleanup: no agent %q answered", agentID)
	}
	return want, nil
}

// collectCleanups reads answers until every wanted agent answered or ctx ends.
func collectCleanups(ctx context.Context, sub *nats.Subscription,
	want map[string]bool) ([]*schemas.CleanupReport, error) {
	var out []*schemas.CleanupReport
	for len(want) > 0 {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break
		}
		r := &schemas.CleanupReport{}
		if err := protojson.Unmarshal(m.Data, r); err != nil {
			return out, fmt.Errorf("cleanup: decode answer: %w", err)
		}
		delete(want, r.AgentId)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AgentId < out[j].AgentId })
	if len(want) > 0 {
		missing := make([]string, 0, len(want))
		for id := range want {
			missing = append(missing, id)
		}
		sort.Strings(missing)
		return out, schemas.NewError(schemas.CategoryTimeout, schemas.ReasonRequestTimeout,
			"cleanup: no answer from agents %s", strings.Join(missing, ", "))
	}
	return out, nil
}
