package multihost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/jetstream"
	"github.com/snakepit-go/snakepit/sessions"
)

// session is what the test knows of one session: who answered it last and
// the count its state has reached.
type session struct {
	id    string
	agent string
	count int
}

// process runs the showcase's process command in session s; it counts calls
// in the session's state.
func (c *cluster) process(s, affinity string, timeout time.Duration) (*dispatch.Reply, int, error) {
	opts := []dispatch.CallOption{dispatch.WithSession(s), dispatch.WithTimeout(timeout)}
	if affinity != "" {
		opts = append(opts, dispatch.WithAffinity(affinity))
	}
	r, err := c.conn().client.Call(context.Background(), "default", "process", nil, opts...)
	if err != nil {
		return nil, 0, err
	}
	var v struct {
		Count int `json:"count"`
	}
	if err := r.Decode(&v); err != nil {
		return nil, 0, err
	}
	return r, v.Count, nil
}

// agentOf returns the agent part of a worker id (pool-n@agent).
func agentOf(worker string) string {
	_, a, _ := strings.Cut(worker, "@")
	return a
}

// openSessions starts sessions until each agent holds at least perAgent.
func (c *cluster) openSessions(perAgent int) map[string]*session {
	c.t.Helper()
	out := map[string]*session{}
	held := map[string]int{}
	for i := 0; i < 40 && !enough(held, c.agents, perAgent); i++ {
		id := fmt.Sprintf("user-%d@example.com", i)
		r, n, err := c.process(id, "", 10*time.Second)
		if err != nil || n != 1 {
			c.t.Fatalf("open session %s: count %d, %v", id, n, err)
		}
		s := &session{id: id, agent: agentOf(r.Worker), count: 1}
		out[id] = s
		held[s.agent]++
	}
	if !enough(held, c.agents, perAgent) {
		c.t.Fatalf("40 sessions spread %v over the agents, want %d each", held, perAgent)
	}
	return out
}

func enough(held map[string]int, agents map[string]*agentBox, n int) bool {
	for id := range agents {
		if held[id] < n {
			return false
		}
	}
	return true
}

// probe is a request sent on an inbox of its own, so every answer to it is
// counted, not only the first.
type probe struct {
	subject string
	sub     *nats.Subscription
	timeout time.Duration
	elapsed time.Duration
	reply   *nats.Msg
}

func (c *cluster) sendProbe(subject string, body []byte, timeout time.Duration) *probe {
	c.t.Helper()
	nc := c.conn().nc
	p := &probe{subject: subject, timeout: timeout}
	inbox := nc.NewInbox()
	var err error
	if p.sub, err = nc.SubscribeSync(inbox); err != nil {
		c.t.Fatal(err)
	}
	m := nats.NewMsg(subject)
	m.Reply, m.Data = inbox, body
	m.Header.Set(dispatch.HeaderTimeout, strconv.FormatInt(timeout.Milliseconds(), 10))
	if err := nc.PublishMsg(m); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// await waits for the first answer up to the probe's timeout and a second's
// slack: a request that is never answered must give up then, not hang.
func (p *probe) await(began time.Time) {
	m, err := p.sub.NextMsg(time.Until(began.Add(p.timeout + time.Second)))
	p.elapsed = time.Since(began)
	if err == nil {
		p.reply = m
	}
}

// extra counts answers after the first, waiting up to d for them.
func (p *probe) extra(d time.Duration) int {
	n := 0
	for {
		if _, err := p.sub.NextMsg(d); err != nil {
			return n
		}
		n++
	}
}

func TestAgentKilled(t *testing.T) {
	c := newCluster(t)
	c.startAgents("a1", "a2")
	sess := c.openSessions(2)

	// Work in flight when a1 dies: three long tasks sent to a1 itself (two run,
	// one waits in its queue) and four to the pool.
	began := time.Now()
	task := []byte(`{"seconds": 4}`)
	direct, shared := "snakepit.default.agent.a1.exec.long_running_task",
		"snakepit.default.exec.long_running_task"
	var probes []*probe
	for range 3 {
		probes = append(probes, c.sendProbe(direct, task, 8*time.Second))
	}
	for range 4 {
		probes = append(probes, c.sendProbe(shared, task, 8*time.Second))
	}
	c.awaitBusy("a1", 2)
	c.kill("a1")
	t.Logf("a1 killed %v after the requests were sent", time.Since(began).Round(time.Millisecond))

	// While the requests wait, a1's sessions are called at once: within the
	// 6 s its registry record still lives, and after.
	var wg sync.WaitGroup
	for _, p := range probes {
		wg.Add(1)
		go func() { defer wg.Done(); p.await(began) }()
	}
	c.checkSessionsAfterKill(sess)
	wg.Wait()
	answered := 0
	for i, p := range probes {
		if p.elapsed > p.timeout+2*time.Second {
			t.Errorf("request %d on %s took %v, past its %v timeout", i, p.subject, p.elapsed, p.timeout)
		}
		if p.reply != nil {
			answered++
			if i < 3 && p.reply.Header.Get(dispatch.HeaderError) == "" {
				t.Errorf("request %d to the killed a1 succeeded: %s", i, p.reply.Data)
			}
		}
	}
	for i, p := range probes {
		if n := p.extra(time.Second); n > 0 {
			t.Errorf("request %d on %s answered %d extra times", i, p.subject, n)
		}
	}
	t.Logf("in-flight requests: %d of %d answered, the rest gave up by their timeout",
		answered, len(probes))
	c.checkSurvivors(sess, "a2")
}

// awaitBusy polls the fleet's reports until agent id has n busy workers.
func (c *cluster) awaitBusy(id string, n uint32) {
	c.t.Helper()
	eventually(c.t, 15*time.Second, fmt.Sprintf("%s has %d busy workers", id, n), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		reports, _ := c.conn().client.Reports(ctx, false)
		for _, r := range reports {
			for _, p := range r.Pools {
				if r.AgentId == id && p.Busy >= n {
					return true
				}
			}
		}
		return false
	})
}

// checkSessionsAfterKill runs while the killed agent a1 may still look alive
// (its registry record lasts 6 s, its subscriptions until the server misses
// its pings): a1's first session is called with hint until a live agent takes
// it over with Snakepit-Session-Reset; its second fails in the strict modes.
func (c *cluster) checkSessionsAfterKill(sess map[string]*session) {
	t := c.t
	t.Helper()
	var ofA1 []*session
	for _, s := range sess {
		if s.agent == "a1" {
			ofA1 = append(ofA1, s)
		}
	}
	c.awaitReleased(ofA1[0])
	for _, mode := range []string{"strict_fail_fast", "strict_queue"} {
		start := time.Now()
		_, _, err := c.process(ofA1[1].id, mode, 3*time.Second)
		var e *dispatch.Error
		if !errors.As(err, &e) {
			t.Errorf("%s call for %s, held by the killed a1: %v, want an error reply", mode, ofA1[1].id, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s call for %s took %v", mode, ofA1[1].id, d)
		}
		t.Logf("%s call for a session of the killed agent: %v", mode, err)
	}
	for _, s := range ofA1[1:] {
		c.awaitReleased(s)
	}
}

// checkSurvivors: once a2's workers are free again, its sessions still have
// their state.
func (c *cluster) checkSurvivors(sess map[string]*session, survivor string) {
	t := c.t
	t.Helper()
	for _, s := range sess {
		if s.agent != survivor {
			continue
		}
		r, n, err := c.process(s.id, "", 10*time.Second)
		if err != nil || r.SessionReset || n != s.count+1 || agentOf(r.Worker) != s.agent {
			t.Errorf("session %s on the surviving %s: count %d, %v; want count %d on %s, no reset",
				s.id, s.agent, n, replyDesc(r, err), s.count+1, s.agent)
		}
	}
}

// awaitReleased calls session s of a dead agent until a live agent takes it
// over; every attempt before ends in an error within its timeout.
func (c *cluster) awaitReleased(s *session) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 1; ; attempt++ {
		start := time.Now()
		r, n, err := c.process(s.id, "", 3*time.Second)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("session %s attempt %d took %v, past its 3s timeout", s.id, attempt, d)
		}
		if err == nil {
			if !r.SessionReset || n != 1 || agentOf(r.Worker) == s.agent {
				t.Errorf("session %s after its agent %s died: reset %v, count %d on %s; want reset, count 1, elsewhere",
					s.id, s.agent, r.SessionReset, n, r.Worker)
			}
			t.Logf("session %s re-leased on %s after %d attempts", s.id, r.Worker, attempt)
			s.agent, s.count = agentOf(r.Worker), n
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s of dead agent not re-leased within 30s: %v", s.id, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// leaseOf reads a session's lease: the agent that holds it and its revision.
func (c *cluster) leaseOf(kv *jetstream.KV, id string) (string, uint64) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := kv.Get(ctx, sessions.Key("default", id))
	if err != nil {
		c.t.Fatalf("get lease of %s: %v", id, err)
	}
	var l struct {
		AgentID string `json:"agent_id"`
	}
	if err := json.Unmarshal(e.Value, &l); err != nil {
		c.t.Fatalf("decode lease of %s: %v", id, err)
	}
	return l.AgentID, e.Revision
}

func (c *cluster) sessionsKV() *jetstream.KV {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := jetstream.Lookup(ctx, c.conn().nc, jetstream.SessionsBucket)
	if err != nil {
		c.t.Fatalf("look up %s: %v", jetstream.SessionsBucket, err)
	}
	return kv
}

func TestNATSNodeStopped(t *testing.T) {
	c := newCluster(t)
	c.startAgents("a1", "a2")
	sess := c.openSessions(2)

	// The buckets were made with three replicas. Stop the node a1 is connected
	// to: a1 must fail over, and the sessions stream loses a replica (and its
	// leader, when that node led it).
	js, err := natsjs.New(c.conn().nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "KV_"+jetstream.SessionsBucket)
	if err != nil {
		t.Fatalf("sessions stream: %v", err)
	}
	info := st.CachedInfo()
	if info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("sessions stream has %d replicas, want 3", info.Config.Replicas)
	}
	victim := c.connectedNode("a1")
	began := time.Now()
	c.stopNode(victim)
	t.Logf("stopped %s, a1's server (the sessions stream's leader was %s)",
		victim, info.Cluster.Leader)

	// Every session keeps its lease and its worker's state.
	for _, s := range sess {
		c.awaitSameSession(s, 45*time.Second)
	}
	t.Logf("all %d sessions answered by their own workers %v after the stop",
		len(sess), time.Since(began).Round(time.Millisecond))
	kv := c.sessionsKV()
	for _, s := range sess {
		if holder, _ := c.leaseOf(kv, s.id); holder != s.agent {
			t.Errorf("lease of %s held by %q after the stop, want %s", s.id, holder, s.agent)
		}
	}
	// The reconnect is logged from nats.go's callback, maybe after the calls.
	var now string
	eventually(t, 15*time.Second, "a1 logs a server other than "+victim, func() bool {
		now = c.connectedNode("a1")
		return now != victim
	})
	t.Logf("a1 now on %s", now)

	// Both agents serve (they answer the fleet's reports) and new sessions can
	// be leased with two of three nodes.
	eventually(t, 45*time.Second, "both agents report", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, _ := c.conn().client.Reports(ctx, false)
		return len(r) == 2
	})
	if _, n, err := c.process("after-the-stop", "", 10*time.Second); err != nil || n != 1 {
		t.Fatalf("new session after the stop: count %d, %v", n, err)
	}
}

// awaitSameSession calls s until it answers; the answer must come from the same
// agent with the state it had (no reset). Attempts before fail in time.
func (c *cluster) awaitSameSession(s *session, within time.Duration) {
	t := c.t
	t.Helper()
	deadline := time.Now().Add(within)
	for attempt := 1; ; attempt++ {
		start := time.Now()
		r, n, err := c.process(s.id, "", 3*time.Second)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("session %s attempt %d took %v, past its 3s timeout", s.id, attempt, d)
		}
		if err == nil {
			if r.SessionReset || n != s.count+1 || agentOf(r.Worker) != s.agent {
				t.Errorf("session %s: count %d on %s, reset %v; want count %d on %s, no reset",
					s.id, n, r.Worker, r.SessionReset, s.count+1, s.agent)
			}
			s.count = n
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s not answered within %v: %v", s.id, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestAgentPartitioned(t *testing.T) {
	c := newCluster(t)
	c.startAgents("a1", "a2")
	sess := c.openSessions(1)
	var s *session
	for _, x := range sess {
		if x.agent == "a1" {
			s = x
			break
		}
	}
	kv := c.sessionsKV()
	holder, rev := c.leaseOf(kv, s.id)
	if holder != "a1" {
		t.Fatalf("lease of %s held by %q, want a1", s.id, holder)
	}

	// Cut a1 off: the session moves to a2 with a newer revision.
	began := time.Now()
	c.disconnect("a1")
	c.awaitReleased(s)
	holder, newRev := c.leaseOf(kv, s.id)
	if holder != "a2" || newRev <= rev {
		t.Fatalf("lease of %s after the takeover: %s at revision %d, want a2 after revision %d",
			s.id, holder, newRev, rev)
	}
	t.Logf("session %s taken over by a2 %v after the cut (revision %d -> %d)",
		s.id, time.Since(began).Round(time.Millisecond), rev, newRev)

	// Bring a1 back and wait until it serves again.
	c.reconnect("a1")
	back := time.Now()
	eventually(t, 150*time.Second, "a1 answers on its direct subject again", func() bool {
		_, err := c.conn().nc.Request("snakepit.default.agent.a1.exec.ping", []byte("{}"), 2*time.Second)
		return err == nil
	})
	t.Logf("a1 serving again %v after reconnecting", time.Since(back).Round(time.Millisecond))

	// For longer than a lease renewal period (session_ttl 30 s / 3), the session
	// stays a2's: a1's stale lease never wins, on routing or in the bucket.
	// Every other call goes to a1 itself, which must pass it on to a2.
	until := time.Now().Add(12 * time.Second)
	for i := 0; time.Now().Before(until); i++ {
		call := c.process
		if i%2 == 1 {
			call = c.processVia("a1")
		}
		r, n, err := call(s.id, "", 5*time.Second)
		if err != nil || r.SessionReset || agentOf(r.Worker) != "a2" || n != s.count+1 {
			t.Fatalf("call %d for %s after a1 came back: count %d, %v; want count %d on a2, no reset",
				i, s.id, n, replyDesc(r, err), s.count+1)
		}
		s.count = n
		if holder, _ := c.leaseOf(kv, s.id); holder != "a2" {
			t.Fatalf("lease of %s went back to %s", s.id, holder)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// processVia is process sent to one agent's direct subject.
func (c *cluster) processVia(
	agent string,
) func(string, string, time.Duration) (*dispatch.Reply, int, error) {
	return func(s, _ string, timeout time.Duration) (*dispatch.Reply, int, error) {
		m := nats.NewMsg("snakepit.default.agent." + agent + ".exec.process")
		m.Data = []byte("{}")
		m.Header.Set(dispatch.HeaderSession, s)
		m.Header.Set(dispatch.HeaderTimeout, strconv.FormatInt(timeout.Milliseconds(), 10))
		resp, err := c.conn().nc.RequestMsg(m, timeout)
		if err != nil {
			return nil, 0, err
		}
		if cat := resp.Header.Get(dispatch.HeaderError); cat != "" {
			return nil, 0, fmt.Errorf("error reply %s: %s", cat, resp.Data)
		}
		var v struct {
			Count int `json:"count"`
		}
		if err := json.Unmarshal(resp.Data, &v); err != nil {
			return nil, 0, err
		}
		r := &dispatch.Reply{Data: resp.Data, Worker: resp.Header.Get(dispatch.HeaderWorker),
			SessionReset: resp.Header.Get(dispatch.HeaderSessionReset) == "true", Header: resp.Header}
		return r, v.Count, nil
	}
}

func replyDesc(r *dispatch.Reply, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("worker %s, reset %v", r.Worker, r.SessionReset)
}
