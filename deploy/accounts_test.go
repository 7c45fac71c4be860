// Package deploy holds no Go code of the product: its tests check the files
// operators deploy. Here the NATS account setup of nats/accounts.conf runs for
// real: an embedded server from nats/node-1.conf (ports, store and cluster
// changed to test values), an agent joined to it as user agent, and clients
// with the permissions the file gives them.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/host"
	"github.com/snakepit-go/snakepit/jetstream"
	"github.com/snakepit-go/snakepit/natsconn"
	"github.com/snakepit-go/snakepit/sessions"
)

// passwords are made per run and handed to the config through the environment,
// as accounts.conf expects.
var passwords = map[string]string{}

func setPasswords(t *testing.T) {
	t.Helper()
	for _, user := range []string{"agent", "ops", "alice", "sys"} {
		pw := fmt.Sprintf("%s-%d", user, time.Now().UnixNano())
		passwords[user] = pw
		t.Setenv("SNAKEPIT_"+strings.ToUpper(user)+"_PASSWORD", pw)
	}
}

func TestNodeConfigsParse(t *testing.T) {
	setPasswords(t)
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		opts, err := server.ProcessConfigFile("nats/" + n + ".conf")
		if err != nil {
			t.Fatalf("ProcessConfigFile(%s) = %v", n, err)
		}
		if opts.ServerName != n || !opts.JetStream || len(opts.Routes) != 3 ||
			opts.Cluster.Name != "snakepit" {
			t.Errorf("%s: server_name %q, jetstream %v, %d routes, cluster %q; want %s, true, 3, snakepit",
				n, opts.ServerName, opts.JetStream, len(opts.Routes), opts.Cluster.Name, n)
		}
	}
}

// serverLog keeps the server's error lines, where it reports every
// permissions violation with the user's name.
type serverLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *serverLog) Errorf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
}

func (l *serverLog) Noticef(string, ...any) {}
func (l *serverLog) Warnf(string, ...any)   {}
func (l *serverLog) Fatalf(string, ...any)  {}
func (l *serverLog) Debugf(string, ...any)  {}
func (l *serverLog) Tracef(string, ...any)  {}

// violations returns the logged violations of user.
func (l *serverLog) violations(user string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, "Violation") && strings.Contains(line, "/user:"+user+`"`) {
			out = append(out, line)
		}
	}
	return out
}

// startServer runs node-1.conf alone on a free loopback port.
func startServer(t *testing.T) (string, *serverLog) {
	t.Helper()
	opts, err := server.ProcessConfigFile("nats/node-1.conf")
	if err != nil {
		t.Fatalf("ProcessConfigFile: %v", err)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
	opts.StoreDir = t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("server.NewServer: %v", err)
	}
	log := &serverLog{}
	s.SetLogger(log, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready within 10s")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL(), log
}

func startAgent(t *testing.T, url, id string) *host.Host {
	t.Helper()
	opts, err := (&natsconn.Flags{User: "agent", Password: passwords["agent"]}).Options()
	if err != nil {
		t.Fatalf("Options: %v", err)
	}
	cfg := config.Default()
	cfg.Pools[0].PoolSize = 2
	cfg.Pools[0].StartupBatchDelay = 0
	cfg.Pools[0].ShutdownGrace = 5 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	h, err := host.Start(ctx, host.Options{
		Config: cfg, NATSURL: url, StateDir: t.TempDir(), AgentID: id,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), NATSOptions: opts,
	})
	if err != nil {
		t.Fatalf("host.Start as user agent: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		h.Shutdown(ctx)
	})
	return h
}

// user is a client connection that records the server's asynchronous errors
// (permission violations arrive that way).
type user struct {
	nc     *nats.Conn
	client *dispatch.Client
	mu     sync.Mutex
	errs   []error
}

func connect(t *testing.T, url, name, inboxPrefix string) *user {
	t.Helper()
	opts, err := (&natsconn.Flags{
		User: name, Password: passwords[name], InboxPrefix: inboxPrefix,
	}).Options()
	if err != nil {
		t.Fatalf("Options: %v", err)
	}
	u := &user{}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		u.mu.Lock()
		u.errs = append(u.errs, err)
		u.mu.Unlock()
	}))
	if u.nc, err = nats.Connect(url, opts...); err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(u.nc.Close)
	u.client = dispatch.NewClient(u.nc)
	return u
}

// violation waits for a permissions violation that names subject.
func (u *user) violation(t *testing.T, subject string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		u.mu.Lock()
		for _, err := range u.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				u.mu.Unlock()
				return
			}
		}
		u.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no permissions violation for %q within 3s; errors: %v", subject, u.errs)
}

func TestAccounts(t *testing.T) {
	setPasswords(t)
	url, log := startServer(t)
	startAgent(t, url, "deploy-agent")
	startAgent(t, url, "deploy-agent-2")
	ctx := t.Context()

	alice := connect(t, url, "alice", "_INBOX_alice")
	t.Run("allowed command", func(t *testing.T) {
		v, err := alice.client.Execute(ctx, "default", "ping", map[string]any{"message": "hi"},
			dispatch.WithTimeout(10*time.Second))
		if err != nil {
			t.Fatalf("Execute(ping) as alice = %v", err)
		}
		if m, _ := v.(map[string]any); m["message"] != "hi" {
			t.Fatalf("Execute(ping) = %v, want message hi", v)
		}
	})
	t.Run("allowed stream of many chunks with acks", func(t *testing.T) {
		var seqs []uint64
		err := alice.client.ExecuteStream(ctx, "default", "batch_inference",
			map[string]any{"items": []int{1, 2, 3, 4, 5, 6, 7}},
			func(c *dispatch.Chunk) error { seqs = append(seqs, c.Seq); return nil },
			dispatch.WithWindow(2), dispatch.WithTimeout(20*time.Second))
		if err != nil || len(seqs) != 7 {
			t.Fatalf("ExecuteStream(batch_inference) as alice = %v after %v, want 7 chunks", err, seqs)
		}
	})
	t.Run("session calls forwarded between agents", func(t *testing.T) {
		// Half of the calls reach the agent without the lease, which forwards
		// them with alice's reply subject: the holder may answer her too.
		workers := map[string]bool{}
		for i := range 10 {
			r, err := alice.client.Call(ctx, "default", "ping", nil,
				dispatch.WithSession("alice-1"), dispatch.WithTimeout(10*time.Second))
			if err != nil {
				t.Fatalf("Call(ping, session) #%d as alice = %v", i, err)
			}
			workers[r.Worker] = true
		}
		if len(workers) != 1 {
			t.Fatalf("session calls ran on %v, want one worker", workers)
		}
	})
	t.Run("command not allowed", func(t *testing.T) {
		_, err := alice.client.Execute(ctx, "default", "process", nil, dispatch.WithTimeout(time.Second))
		if err == nil {
			t.Fatal("Execute(process) as alice succeeded, want it refused")
		}
		alice.violation(t, "snakepit.default.exec.process")
	})
	t.Run("direct agent subject not allowed", func(t *testing.T) {
		subj := "snakepit.default.agent.deploy-agent.exec.ping"
		if err := alice.nc.PublishRequest(subj, alice.nc.NewInbox(), []byte("{}")); err != nil {
			t.Fatalf("publish: %v", err)
		}
		alice.violation(t, subj)
	})
	t.Run("another inbox not readable", func(t *testing.T) {
		if _, err := alice.nc.SubscribeSync("_INBOX.>"); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		alice.violation(t, "_INBOX.>")
	})
	t.Run("default inbox prefix gets no reply", func(t *testing.T) {
		plain := connect(t, url, "alice", "")
		_, err := plain.client.Execute(ctx, "default", "ping", nil, dispatch.WithTimeout(time.Second))
		if err == nil {
			t.Fatal("Execute(ping) as alice with _INBOX succeeded, want no reply")
		}
	})

	ops := connect(t, url, "ops", "_INBOX_ops")
	t.Run("operator reports and sessions", func(t *testing.T) {
		if _, err := ops.client.Execute(ctx, "default", "process", nil,
			dispatch.WithSession("ops-session"), dispatch.WithTimeout(10*time.Second)); err != nil {
			t.Fatalf("Execute(process) as ops = %v", err)
		}
		reports, err := ops.client.Reports(ctx, true)
		if err != nil || len(reports) != 2 {
			t.Fatalf("Reports as ops = %d reports, %v; want 2", len(reports), err)
		}
		kv, err := jetstream.Lookup(ctx, ops.nc, jetstream.SessionsBucket)
		if err != nil {
			t.Fatalf("Lookup(%s) as ops = %v", jetstream.SessionsBucket, err)
		}
		if _, err := kv.Get(ctx, sessions.Key("default", "ops-session")); err != nil {
			t.Fatalf("Get(ops-session lease) as ops = %v", err)
		}
	})

	// The agent and the operator did all of the above within their rights.
	for _, name := range []string{"agent", "ops"} {
		if v := log.violations(name); len(v) > 0 {
			t.Errorf("user %s was refused: %v", name, v)
		}
	}
	if v := log.violations("alice"); len(v) == 0 {
		t.Error("the server logged no violation of alice's")
	} else {
		t.Logf("alice refused: %v", v)
	}
}
