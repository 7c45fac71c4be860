// Command stats runs some requests on an embedded fleet, then shows the
// reference's stats map three ways (all pools, one named pool, a pool that
// does not exist) and the worker ids.
//
//	go run ./examples/stats
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit"
)

func main() { os.Exit(run()) }

func run() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel).
		With().Timestamp().Logger()
	rt, err := snakepit.New(ctx, snakepit.Options{Log: log})
	if err != nil {
		fmt.Fprintf(os.Stderr, "stats: start: %v\n", err)
		return 1
	}
	defer rt.Stop(context.WithoutCancel(ctx))

	load(ctx, rt, 20)
	all, err := rt.GetStats(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stats: %v\n", err)
		return 1
	}
	show("all pools", all)
	def, err := rt.GetPoolStats(ctx, "default")
	if err != nil {
		fmt.Fprintf(os.Stderr, "stats: %v\n", err)
		return 1
	}
	show("pool default", def)

	var e *snakepit.Error
	if _, err := rt.GetPoolStats(ctx, "hpc"); errors.As(err, &e) {
		fmt.Printf("pool hpc: %s/%s: %s\n", e.Category, e.Reason, e.Message)
	}
	workers, err := rt.ListWorkers(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "stats: %v\n", err)
		return 1
	}
	fmt.Printf("workers: %v\n", workers)
	if all.Available == 0 && all.Queued > 100 {
		fmt.Println("pools under heavy load")
	}
	return 0
}

// load runs n requests at once, one of them failing on purpose.
func load(ctx context.Context, rt *snakepit.Runtime, n int) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			command := "compute"
			if i == 0 {
				command = "fail"
			}
			_, _ = rt.Execute(ctx, command, map[string]any{"input": []int{i, i + 1}})
		}()
	}
	wg.Wait()
}

func show(label string, s snakepit.Stats) {
	b, _ := json.Marshal(s)
	fmt.Printf("%s: %s\n", label, b)
}
