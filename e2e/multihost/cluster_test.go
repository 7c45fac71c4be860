package multihost

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	dnetwork "github.com/docker/docker/api/types/network"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/snakepit-go/snakepit/dispatch"
	"github.com/snakepit-go/snakepit/natsconn"
)

// agentConfig is every agent's configuration: small pools that start at once,
// sessions short enough that renewals happen during a test.
const agentConfig = `pool_queue_timeout: 5000
pools:
  - name: default
    pool_size: 2
    startup_batch_delay_ms: 0
    session_ttl: 30
    shutdown_grace_ms: 2000
`

// cluster is one test's fleet: a network, three NATS nodes and agents.
type cluster struct {
	t      *testing.T
	net    *testcontainers.DockerNetwork
	nodes  []*node
	agents map[string]*agentBox
	dir    string

	mu     sync.Mutex
	client *conn
	ctrs   []testcontainers.Container
}

type node struct {
	name string
	c    testcontainers.Container
	url  string // the test's own view: a port on 127.0.0.1
}

type agentBox struct {
	id string
	c  testcontainers.Container
}

// newCluster starts a network and a 3-node NATS cluster from deploy/nats and
// waits until JetStream answers through it.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	requireDocker(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	nw, err := network.New(ctx)
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	c := &cluster{t: t, net: nw, agents: map[string]*agentBox{}, dir: t.TempDir()}
	t.Cleanup(c.cleanup)

	var wg sync.WaitGroup
	errs := make([]error, 3)
	c.nodes = make([]*node, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = c.startNode(ctx, fmt.Sprintf("node-%d", i+1))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("start NATS node: %v", err)
		}
	}
	c.awaitJetStream(ctx)
	return c
}

// startNode runs deploy/nats/<name>.conf with its ping interval shortened, so a
// client cut off the network is noticed in seconds rather than a minute.
func (c *cluster) startNode(ctx context.Context, name string) (*node, error) {
	dir := filepath.Join(c.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conf, err := os.ReadFile(filepath.Join(suite.repoRoot, "deploy/nats", name+".conf"))
	if err != nil {
		return nil, err
	}
	conf, err = rewrite(conf, map[string]string{
		`ping_interval: "20s"`: `ping_interval: "2s"`,
		`ping_max: 3`:          `ping_max: 2`,
	})
	if err != nil {
		return nil, fmt.Errorf("%s.conf: %w", name, err)
	}
	accounts, err := os.ReadFile(filepath.Join(suite.repoRoot, "deploy/nats/accounts.conf"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "node.conf"), conf, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts.conf"), accounts, 0o644); err != nil {
		return nil, err
	}
	env := map[string]string{}
	for u, pw := range suite.passwords {
		env["SNAKEPIT_"+strings.ToUpper(u)+"_PASSWORD"] = pw
	}
	req := testcontainers.ContainerRequest{
		Image: natsImage, Cmd: []string{"-c", "/etc/nats/node.conf"}, Env: env,
		ExposedPorts: []string{"127.0.0.1::4222/tcp"},
		Networks:     []string{c.net.Name}, NetworkAliases: map[string][]string{c.net.Name: {name}},
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.Binds = append(hc.Binds, dir+":/etc/nats:ro")
			hc.Tmpfs = map[string]string{"/data": "rw"}
		},
		WaitingFor: wait.ForLog("Server is ready").WithStartupTimeout(60 * time.Second),
	}
	ctr, err := c.start(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	port, err := ctr.MappedPort(ctx, "4222/tcp")
	if err != nil {
		return nil, fmt.Errorf("%s: mapped port: %w", name, err)
	}
	return &node{name: name, c: ctr, url: "nats://127.0.0.1:" + port.Port()}, nil
}

func (c *cluster) start(ctx context.Context,
	req testcontainers.ContainerRequest) (testcontainers.Container, error) {
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: req, Started: true, Logger: tclog.TestLogger(c.t),
	})
	if ctr != nil {
		c.mu.Lock()
		c.ctrs = append(c.ctrs, ctr)
		c.mu.Unlock()
	}
	return ctr, err
}

// rewrite replaces each old text, which must be there.
func rewrite(b []byte, repl map[string]string) ([]byte, error) {
	s := string(b)
	for old, new := range repl {
		if !strings.Contains(s, old) {
			return nil, fmt.Errorf("no %q to replace", old)
		}
		s = strings.ReplaceAll(s, old, new)
	}
	return []byte(s), nil
}

// awaitJetStream polls until the cluster has a JetStream meta leader.
func (c *cluster) awaitJetStream(ctx context.Context) {
	c.t.Helper()
	js, err := natsjs.New(c.conn().nc)
	if err != nil {
		c.t.Fatal(err)
	}
	eventually(c.t, 60*time.Second, "JetStream cluster ready", func() bool {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(actx)
		return err == nil
	})
}

// startAgents starts agents with the given ids in parallel and waits for each
// to be ready.
func (c *cluster) startAgents(ids ...string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), 2*time.Minute)
	defer cancel()
	dir := filepath.Join(c.dir, "agent")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte(agentConfig), 0o644); err != nil {
		c.t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []error
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctr, err := c.startAgent(ctx, id, dir)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, fmt.Errorf("agent %s: %w", id, err))
				return
			}
			c.agents[id] = &agentBox{id: id, c: ctr}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		c.t.Fatalf("start agents: %v", failed)
	}
}

func (c *cluster) startAgent(ctx context.Context, id, confDir string) (
	testcontainers.Container, error) {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, "nats://"+n.name+":4222")
	}
	binds := append([]string{confDir + ":/etc/snakepit:ro"}, suite.python.binds...)
	req := testcontainers.ContainerRequest{
		Image: agentImage,
		Cmd: []string{
			"--nats", strings.Join(urls, ","), "--nats-user", "agent",
			"--config", "/etc/snakepit/agent.yaml", "--state-dir", "/state",
			"--agent-id", id, "--kv-replicas", "3", "--log-format", "json",
			"--python", suite.python.executable,
		},
		// The password comes from the environment, as natsconn reads it.
		Env:      map[string]string{natsconn.EnvPassword: suite.passwords["agent"]},
		Hostname: id,
		Networks: []string{c.net.Name}, NetworkAliases: map[string][]string{c.net.Name: {id}},
		HostConfigModifier: func(hc *container.HostConfig) {
			hc.Binds = append(hc.Binds, binds...)
			hc.Tmpfs = map[string]string{"/state": "rw", "/tmp": "rw"}
		},
		WaitingFor: wait.ForLog("agent ready").WithStartupTimeout(90 * time.Second),
	}
	return c.start(ctx, req)
}

// conn is a connection of the ops user from the test process to the nodes'
// loopback ports. Servers the cluster advertises (addresses inside the Docker
// network) are ignored: the test reaches containers through 127.0.0.1 only.
type conn struct {
	nc     *nats.Conn
	client *dispatch.Client
}

func (c *cluster) conn() *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		return c.client
	}
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.url)
	}
	opts, err := (&natsconn.Flags{
		User: "ops", Password: suite.passwords["ops"], InboxPrefix: "_INBOX_ops",
	}).Options()
	if err != nil {
		c.t.Fatal(err)
	}
	opts = append(opts, nats.IgnoreDiscoveredServers(), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.Timeout(3*time.Second),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		c.t.Fatalf("connect to the cluster: %v", err)
	}
	c.client = &conn{nc: nc, client: dispatch.NewClient(nc)}
	return c.client
}

// kill ends an agent's container with SIGKILL: no goodbye to anyone.
func (c *cluster) kill(id string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := suite.docker.ContainerKill(ctx, c.agents[id].c.GetContainerID(), "KILL"); err != nil {
		c.t.Fatalf("kill agent %s: %v", id, err)
	}
}

// disconnect takes an agent's container off the network; reconnect puts it
// back under the same name.
func (c *cluster) disconnect(id string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctr := c.agents[id].c.GetContainerID()
	if err := suite.docker.NetworkDisconnect(ctx, c.net.ID, ctr, true); err != nil {
		c.t.Fatalf("disconnect agent %s: %v", id, err)
	}
}

func (c *cluster) reconnect(id string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := suite.docker.NetworkConnect(ctx, c.net.ID, c.agents[id].c.GetContainerID(),
		&dnetwork.EndpointSettings{Aliases: []string{id}})
	if err != nil {
		c.t.Fatalf("reconnect agent %s: %v", id, err)
	}
}

// stopNode stops a NATS node's container (SIGTERM, then SIGKILL after 5 s).
func (c *cluster) stopNode(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range c.nodes {
		if n.name == name {
			grace := 5 * time.Second
			if err := n.c.Stop(ctx, &grace); err != nil {
				c.t.Fatalf("stop %s: %v", name, err)
			}
			return
		}
	}
	c.t.Fatalf("no node %s", name)
}

// cleanup closes the client, shows the end of each container's log when the
// test failed, removes every container and then the network.
func (c *cluster) cleanup() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		c.client.nc.Close()
	}
	if testing.Verbose() && !c.t.Failed() {
		for id, a := range c.agents {
			c.t.Logf("--- agent %s log:\n%s", id, tail(a.c, 40))
		}
	}
	if c.t.Failed() {
		for _, n := range c.nodes {
			if n != nil {
				c.t.Logf("--- %s log:\n%s", n.name, tail(n.c, 30))
			}
		}
		for id, a := range c.agents {
			c.t.Logf("--- agent %s log:\n%s", id, tail(a.c, 60))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ctr := range c.ctrs {
		if err := ctr.Terminate(ctx, testcontainers.StopTimeout(0)); err != nil {
			c.t.Errorf("remove container: %v", err)
		}
	}
	if err := c.net.Remove(ctx); err != nil {
		c.t.Errorf("remove network: %v", err)
	}
}

// connectedNode reads from an agent's log the node it is connected to: the
// nats_url of its last "agent ready" or reconnect line.
func (c *cluster) connectedNode(id string) string {
	c.t.Helper()
	var host string
	for _, line := range strings.Split(tail(c.agents[id].c, 1000), "\n") {
		var rec struct {
			URL string `json:"nats_url"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.URL != "" {
			u, err := url.Parse(rec.URL)
			if err == nil {
				host = u.Hostname()
			}
		}
	}
	if host == "" {
		c.t.Fatalf("agent %s logged no nats_url", id)
	}
	return host
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*m`)

func tail(ctr testcontainers.Container, n int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := ctr.Logs(ctx)
	if err != nil {
		return err.Error()
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	lines := strings.Split(strings.TrimRight(ansi.ReplaceAllString(string(b), ""), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
