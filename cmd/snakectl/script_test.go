package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/host"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"snakectl": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs testdata/script/*.txtar, each against its own agent (two
// workers of the showcase adapter on an embedded server) named by NATS_URL.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:   "testdata/script",
		Setup: startAgent,
	})
}

func startAgent(env *testscript.Env) error {
	cfg := config.Default()
	cfg.Pools[0].PoolSize = 2
	cfg.Pools[0].StartupBatchDelay = 0
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := host.Start(ctx, host.Options{
		Config: cfg, Listen: "127.0.0.1:0", StateDir: env.WorkDir + "/state",
		AgentID: "script-agent", Log: zerolog.Nop(),
	})
	if err != nil {
		return err
	}
	env.Setenv("NATS_URL", h.Conn().ConnectedUrl())
	env.Defer(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.Shutdown(ctx)
	})
	return nil
}
