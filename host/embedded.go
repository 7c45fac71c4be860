package host

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embedded is a NATS server with JetStream inside the agent process.
type embedded struct {
	ns *server.Server
}

// startEmbedded starts a server bound to listen (never 0.0.0.0 unless asked) with
// its JetStream store under stateDir.
func startEmbedded(listen, stateDir, name string) (*embedded, error) {
	hostPart, portPart, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: listen %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portPart)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded nats: listen %q: bad port", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if hostPart == "" {
		hostPart = "127.0.0.1"
	}
	// A port in use is reported at once, not after the readiness wait.
	if port != server.RANDOM_PORT {
		ln, err := net.Listen("tcp", net.JoinHostPort(hostPart, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen %s: %w", listen, err)
		}
		ln.Close()
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "snakepit-" + name,
		Host:       hostPart,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(stateDir, "jetstream"),
		NoSigs:     true,
		NoLog:      true,
		HTTPPort:   0,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats on %s: %w", listen, err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats on %s: not ready within 10s (is the port in use?)", listen)
	}
	return &embedded{ns: ns}, nil
}

func (e *embedded) clientURL() string { return e.ns.ClientURL() }

func (e *embedded) shutdown() {
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
}
