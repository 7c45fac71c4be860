// Command basic runs one command on the fleet: with no flags it embeds the
// whole fleet in this process (its own NATS server on a free loopback port,
// Python workers running the showcase adapter), so nothing has to run
// beforehand, and it leaves no process behind. With -nats it joins a running
// fleet instead.
//
//	go run ./examples/basic
//	go run ./examples/basic -nats nats://127.0.0.1:4222 -message hi
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit"
)

func main() {
	natsURL := flag.String("nats", "", "join the fleet at this NATS URL instead of embedding one")
	message := flag.String("message", "hello", "message for the ping command")
	flag.Parse()
	os.Exit(run(*natsURL, *message))
}

func run(natsURL, message string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel).
		With().Timestamp().Logger()

	if err := snakepit.Start(ctx, snakepit.Options{NATSURL: natsURL, Log: log}); err != nil {
		fmt.Fprintf(os.Stderr, "basic: start: %v\n", err)
		return 1
	}
	// Stop the runtime (workers, NATS server), then make sure nothing of
	// the run is left.
	defer func() {
		_ = snakepit.Stop(context.WithoutCancel(ctx))
		if err := snakepit.Cleanup(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintf(os.Stderr, "basic: cleanup: %v\n", err)
		}
	}()

	result, err := snakepit.Execute(ctx, "ping", map[string]any{"message": message},
		snakepit.WithTimeout(10*time.Second))
	var e *snakepit.Error
	if errors.As(err, &e) {
		fmt.Fprintf(os.Stderr, "basic: ping failed: %s/%s: %s\n", e.Category, e.Reason, e.Message)
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "basic: ping: %v\n", err)
		return 1
	}
	out, _ := json.Marshal(result)
	fmt.Printf("ping result: %s\n", out)
	return 0
}
