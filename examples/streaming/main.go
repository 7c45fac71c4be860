// Command streaming prints a command's output chunk by chunk as it arrives:
// batch_inference over a few items, then a report in a session, stopped early
// with snakepit.ErrHalt (the reference's :halt). With no flags it embeds the
// fleet in this process.
//
//	go run ./examples/streaming
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit"
)

func main() {
	natsURL := flag.String("nats", "", "join the fleet at this NATS URL instead of embedding one")
	flag.Parse()
	os.Exit(run(*natsURL))
}

func run(natsURL string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel)
	if err := snakepit.Start(ctx, snakepit.Options{NATSURL: natsURL, Log: log}); err != nil {
		fmt.Fprintf(os.Stderr, "streaming: start: %v\n", err)
		return 1
	}
	defer func() { _ = snakepit.Stop(context.WithoutCancel(ctx)) }()

	printChunk := func(c *snakepit.Chunk) error {
		fmt.Printf("chunk %d: %s\n", c.Seq, c.Data)
		return nil
	}
	err := snakepit.ExecuteStream(ctx, "batch_inference",
		map[string]any{"items": []string{"cat", "dog", "snake"}}, printChunk)
	if err != nil {
		fmt.Fprintf(os.Stderr, "streaming: batch_inference: %v\n", err)
		return 1
	}

	sections := 0
	err = snakepit.ExecuteInSessionStream(ctx, "session_123", "generate_report",
		map[string]any{"template": "quarterly", "sections": 10, "delay_ms": 50},
		func(c *snakepit.Chunk) error {
			sections++
			fmt.Printf("section %d: %s\n", c.Seq, c.Data)
			if sections == 3 {
				return snakepit.ErrHalt
			}
			return nil
		})
	if err != nil {
		fmt.Fprintf(os.Stderr, "streaming: generate_report: %v\n", err)
		return 1
	}
	fmt.Println("stopped the report after 3 sections")
	return 0
}
