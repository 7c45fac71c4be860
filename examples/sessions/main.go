// Command sessions keeps state on one worker across calls: initialize, three
// process calls that count up, finalize — the reference's session example. With
// no flags it embeds the fleet in this process.
//
//	go run ./examples/sessions
//	go run ./examples/sessions -nats nats://127.0.0.1:4222 -session user_123
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit"
)

func main() {
	natsURL := flag.String("nats", "", "join the fleet at this NATS URL instead of embedding one")
	session := flag.String("session", "user_123_session_abc", "session id")
	flag.Parse()
	os.Exit(run(*natsURL, *session))
}

func run(natsURL, session string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel)
	if err := snakepit.Start(ctx, snakepit.Options{NATSURL: natsURL, Log: log}); err != nil {
		fmt.Fprintf(os.Stderr, "sessions: start: %v\n", err)
		return 1
	}
	defer func() { _ = snakepit.Stop(context.WithoutCancel(ctx)) }()

	steps := []struct {
		command string
		args    map[string]any
	}{
		{"initialize", map[string]any{"config": map[string]any{"model": "demo"}}},
		{"process", map[string]any{"data": "first"}},
		{"process", map[string]any{"data": "second"}},
		{"process", map[string]any{"data": "third"}},
		{"finalize", nil},
	}
	for _, st := range steps {
		v, err := snakepit.ExecuteInSession(ctx, session, st.command, st.args)
		if err != nil {
			fmt.Fprintf(os.Stderr, "sessions: %s: %v\n", st.command, err)
			return 1
		}
		out, _ := json.Marshal(v)
		fmt.Printf("%-10s %s\n", st.command, out)
	}
	return 0
}
