package snakepit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

// childStateDirEnv gives the child its state dir.
const childStateDirEnv = "SNAKEPIT_TEST_STATE_DIR"

// childMain is the test binary run as a script with exit mode halt. It prints
// each shutdown event and, at the exit event, how many processes of its run
// are left; RunAsScript must then end the process with the status.
func childMain(mode string) int {
	dir := os.Getenv(childStateDirEnv)
	AttachTelemetry(func(e Event) {
		fmt.Printf("event %s status=%v cleanup_result=%v\n", e.Name, e.Metadata["status"],
			e.Metadata["cleanup_result"])
		if e.Name == EventShutdownExit {
			fmt.Printf("left %d\n", len(processesMentioning(dir)))
		}
	}, ScriptShutdownEvents...)
	fn := func(ctx context.Context) error {
		if _, err := Execute(ctx, "ping", nil); err != nil {
			return err
		}
		switch mode {
		case "panic":
			panic("script failed")
		case "error":
			return errors.New("script failed")
		}
		return nil
	}
	opts := ScriptOptions{ExitMode: ExitHalt, Runtime: Options{
		Config: testConfig(2), StateDir: dir, Listen: DefaultListen, AgentID: "child",
	}}
	err := RunAsScript(context.Background(), fn, opts)
	fmt.Printf("RunAsScript returned %v\n", err)
	return 3
}

func TestHaltExitsWithStatusAfterCleanup(t *testing.T) {
	cases := []struct {
		mode   string
		status int
	}{{"return", 0}, {"panic", 1}, {"error", 1}}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"="+tc.mode, childStateDirEnv+"="+dir)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			var exitErr *exec.ExitError
			code := 0
			if errors.As(err, &exitErr) {
				code = exitErr.ExitCode()
			} else if err != nil {
				t.Fatalf("run child: %v", err)
			}
			if code != tc.status {
				t.Fatalf("child exit status = %d, want %d\nstdout:\n%s\nstderr:\n%s",
					code, tc.status, out, stderr.String())
			}
			wantLines := []string{}
			results := []string{"pending", "pending", "ok", "ok"}
			for i, name := range ScriptShutdownEvents {
				wantLines = append(wantLines,
					fmt.Sprintf("event %s status=%d cleanup_result=%s", name, tc.status, results[i]))
			}
			wantLines = append(wantLines, "left 0")
			got := strings.Split(strings.TrimSpace(string(out)), "\n")
			if !reflect.DeepEqual(got, wantLines) {
				t.Fatalf("child stdout = %q, want %q", got, wantLines)
			}
			assertNoProcesses(t, dir)
		})
	}
}
