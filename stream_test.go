package snakepit

import (
	"errors"
	"testing"
)

func TestExecuteStream(t *testing.T) {
	rt := newRuntime(t, testOptions(t, testConfig(1)))
	ctx := t.Context()
	var items []any
	err := rt.ExecuteStream(ctx, "batch_inference", map[string]any{"items": []int{1, 2, 3}},
		func(c *Chunk) error {
			var v map[string]any
			if err := c.Decode(&v); err != nil {
				return err
			}
			items = append(items, v["item"])
			return nil
		})
	if err != nil || len(items) != 3 {
		t.Fatalf("ExecuteStream = %v with %v, want 3 chunks", err, items)
	}

	var seen int
	err = rt.ExecuteInSessionStream(ctx, "report-1", "generate_report",
		map[string]any{"sections": 5, "delay_ms": 1}, func(*Chunk) error {
			seen++
			if seen == 2 {
				return ErrHalt
			}
			return nil
		})
	if err != nil || seen != 2 {
		t.Fatalf("ExecuteInSessionStream with a halt = %v after %d chunks, want nil after 2", err, seen)
	}

	err = rt.ExecuteStream(ctx, "fail_after", map[string]int{"n": 1},
		func(*Chunk) error { return nil })
	if !errors.Is(err, &Error{Category: CategoryWorker}) {
		t.Fatalf("ExecuteStream(fail_after) = %v, want a worker error", err)
	}
}
