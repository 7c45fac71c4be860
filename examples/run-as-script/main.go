// Command run-as-script is a short-lived script: RunAsScript starts the
// embedded fleet, waits for its workers, runs the work, then stops the fleet
// and cleans up every process of the run before returning. The shutdown
// telemetry events are printed as they happen.
//
//	go run ./examples/run-as-script
//	SNAKEPIT_SCRIPT_EXIT=halt go run ./examples/run-as-script fail
//
// With exit mode halt the process ends with the script's status (1 when the
// work failed) right after cleanup.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit"
)

func main() {
	log := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).Level(zerolog.WarnLevel).
		With().Timestamp().Logger()
	snakepit.AttachTelemetry(func(e snakepit.Event) {
		fmt.Printf("telemetry %s run_id=%v exit_mode=%v stop_mode=%v owned=%v status=%v cleanup_result=%v\n",
			e.Name, e.Metadata["run_id"], e.Metadata["exit_mode"], e.Metadata["stop_mode"],
			e.Metadata["owned"], e.Metadata["status"], e.Metadata["cleanup_result"])
	}, snakepit.ScriptShutdownEvents...)

	fail := len(os.Args) > 1 && os.Args[1] == "fail"
	var workErr error
	err := snakepit.RunAsScript(context.Background(), func(ctx context.Context) error {
		workErr = work(ctx, fail)
		return workErr
	}, snakepit.ScriptOptions{
		Timeout: 30 * time.Second, CleanupTimeout: 10 * time.Second,
		Runtime: snakepit.Options{Log: log},
	})
	if err != nil {
		if !errors.Is(err, workErr) {
			fmt.Fprintf(os.Stderr, "run-as-script: %v\n", err)
		}
		os.Exit(1)
	}
}

func work(ctx context.Context, fail bool) error {
	command, args := "process_batch", map[string]any{"items": []any{1, "two", 3.5}}
	if fail {
		command, args = "fail", map[string]any{"message": "the batch could not be processed"}
	}
	result, err := snakepit.Execute(ctx, command, args)
	if err != nil {
		// Say it here: with exit mode halt, nothing is written after shutdown.
		fmt.Fprintf(os.Stderr, "run-as-script: %s: %v\n", command, err)
		return err
	}
	out, _ := json.Marshal(result)
	fmt.Printf("processing complete: %s\n", out)
	return nil
}
