// Command pool-agent runs one agent: it supervises local Python workers and
// serves their pools over NATS. With no flags it starts an embedded NATS server
// with JetStream on 127.0.0.1:4222 and the default pool running the showcase
// adapter. This file is wiring only: flags, configuration, logging and signals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/host"
	"github.com/snakepit-go/snakepit/natsconn"
)

// version is set by the build; empty reports dispatch.Version.
var version = ""

type flags struct {
	configFile string
	natsURL    string
	listen     string
	stateDir   string
	agentID    string
	prefix     string
	logLevel   string
	logFormat  string
	poolSize   int
	python     string
	healthAddr string
	kvReplicas int
	conn       natsconn.Flags
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	f, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg, err := loadConfig(f)
	if err != nil {
		fmt.Fprintf(stderr, "pool-agent: %v\n", err)
		return 2
	}
	natsOpts, err := f.conn.Options()
	if err != nil {
		fmt.Fprintf(stderr, "pool-agent: %v\n", err)
		return 2
	}
	log := newLogger(stderr, f.logFormat, pick(f.logLevel, cfg.LogLevel))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	h, err := host.Start(ctx, host.Options{
		Config: cfg, NATSURL: f.natsURL, Listen: f.listen, StateDir: f.stateDir,
		AgentID: f.agentID, Prefix: f.prefix, Version: version, Log: log,
		KVReplicas: f.kvReplicas, NATSOptions: natsOpts, HealthAddr: f.healthAddr,
	})
	if err != nil {
		log.Error().Err(err).Msg("agent failed to start")
		return 1
	}
	select {
	case <-ctx.Done():
	case <-h.Done():
		// Drained by an operator: the host has already stopped gracefully.
		return 0
	}
	stop()
	return shutdown(h, cfg, log)
}

// shutdown stops gracefully; a second signal stops at once.
func shutdown(h *host.Host, cfg *config.Config, log zerolog.Logger) int {
	grace := time.Duration(0)
	for _, p := range cfg.Pools {
		grace = max(grace, p.ShutdownGrace)
	}
	log.Info().Int64("grace_ms", grace.Milliseconds()).Msg("agent stopping")
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	ctx, cancelGrace := context.WithTimeout(ctx, grace+5*time.Second)
	defer cancelGrace()
	h.Shutdown(ctx)
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*flags, error) {
	fs := flag.NewFlagSet("pool-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &flags{}
	fs.StringVar(&f.configFile, "config", env("CONFIG", ""), "YAML configuration file (env SNAKEPIT_CONFIG)")
	fs.StringVar(&f.natsURL, "nats", env("NATS_URL", os.Getenv("NATS_URL")),
		"join this NATS server instead of embedding one (env SNAKEPIT_NATS_URL, NATS_URL)")
	fs.StringVar(&f.listen, "listen", env("LISTEN", host.DefaultListen), "embedded NATS server address (env SNAKEPIT_LISTEN)")
	fs.StringVar(&f.stateDir, "state-dir", env("STATE_DIR", host.DefaultStateDir()), "state directory, locked while running")
	fs.StringVar(&f.agentID, "agent-id", env("AGENT_ID", ""), "agent id (default: kept in the state dir)")
	fs.StringVar(&f.prefix, "prefix", env("PREFIX", "snakepit"), "subject prefix (env SNAKEPIT_PREFIX)")
	fs.StringVar(&f.logLevel, "log-level", env("LOG_LEVEL", ""), "debug, info, warning or error (default: log_level of the config, info)")
	fs.StringVar(&f.logFormat, "log-format", env("LOG_FORMAT", "auto"), "json, console or auto (console on a terminal)")
	fs.IntVar(&f.poolSize, "pool-size", 0, "override pool_size of every pool")
	fs.StringVar(&f.python, "python", env("PYTHON", ""), "Python interpreter of every pool (env SNAKEPIT_PYTHON)")
	fs.StringVar(&f.healthAddr, "health-addr", env("HEALTH_ADDR", ""),
		"serve GET /healthz on this address, e.g. 127.0.0.1:8086 (env SNAKEPIT_HEALTH_ADDR)")
	fs.IntVar(&f.kvReplicas, "kv-replicas", 1, "replicas of the KV buckets this agent creates: 1, or 3 in a cluster")
	f.conn.Register(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: pool-agent [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pool-agent: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return nil, errors.New("unexpected arguments")
	}
	return f, nil
}

func loadConfig(f *flags) (*config.Config, error) {
	cfg := config.Default()
	if f.configFile != "" {
		var err error
		if cfg, err = config.LoadFile(f.configFile); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Pools {
		if f.poolSize > 0 {
			cfg.Pools[i].PoolSize = f.poolSize
		}
		if f.python != "" {
			cfg.Pools[i].Python = f.python
		}
	}
	if f.poolSize < 0 {
		return nil, fmt.Errorf("--pool-size: must be positive, got %d", f.poolSize)
	}
	return cfg, cfg.Validate()
}

// env reads SNAKEPIT_<name>, or def.
func env(name, def string) string {
	if v, ok := os.LookupEnv("SNAKEPIT_" + name); ok {
		return v
	}
	return def
}

func pick(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// newLogger writes JSON, or console format on a terminal.
func newLogger(w io.Writer, format, level string) zerolog.Logger {
	zerolog.TimeFieldFormat = time.RFC3339Nano
	if format == "console" || (format == "auto" && isTerminal(w)) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	lvl, err := zerolog.ParseLevel(strings.Replace(level, "warning", "warn", 1))
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
