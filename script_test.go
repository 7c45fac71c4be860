package snakepit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// exitLog records the process-ending calls a script made instead of ending
// the test binary.
type exitLog struct{ calls []string }

// fakeExit replaces os.Exit, the stop function and the final wait for the
// test, and makes the program not a long-running host unless noHalt.
func fakeExit(t *testing.T, noHalt bool) *exitLog {
	t.Helper()
	l := &exitLog{}
	oldExit, oldBlock := osExit, blockForever
	osExit = func(status int) { l.calls = append(l.calls, fmt.Sprintf("halt %d", status)) }
	blockForever = func() { l.calls = append(l.calls, "blocked") }
	SetStopFunc(func(status int) { l.calls = append(l.calls, fmt.Sprintf("stop %d", status)) })
	SetNoHalt(noHalt)
	t.Cleanup(func() {
		osExit, blockForever = oldExit, oldBlock
		SetStopFunc(nil)
		exitSettings.mu.Lock()
		exitSettings.noHaltSet = false
		exitSettings.mu.Unlock()
	})
	return l
}

// setScriptEnv sets SNAKEPIT_SCRIPT_EXIT and SNAKEPIT_SCRIPT_HALT for the
// test; a nil value unsets the variable.
func setScriptEnv(t *testing.T, exit, halt *string) {
	t.Helper()
	for name, v := range map[string]*string{EnvScriptExit: exit, EnvScriptHalt: halt} {
		t.Setenv(name, "")
		if v == nil {
			os.Unsetenv(name)
		} else {
			t.Setenv(name, *v)
		}
	}
}

func str(s string) *string { return &s }

// outcome is what one RunAsScript call did.
type outcome struct {
	err      error
	panicked any
	ran      bool
	rt       *Runtime
	events   []Event
	exits    []string
	log      string
}

// runScript runs RunAsScript with fn (nil: a ping) and records everything.
func runScript(
	t *testing.T, opts ScriptOptions, noHalt bool, fn func(context.Context) error,
) outcome {
	t.Helper()
	exits := fakeExit(t, noHalt)
	rec := record(t, ScriptShutdownEvents...)
	buf := &syncBuffer{}
	// With no runtime running, start a small one; with one running, bring no
	// configuration, which would count as the script's own.
	if _, err := Current(); err != nil && opts.Runtime.Config == nil && opts.Runtime.NATSURL == "" {
		opts.Runtime = testOptions(t, testConfig(1))
	}
	opts.Runtime.Log = zerolog.New(buf).Level(zerolog.WarnLevel)
	var o outcome
	body := func(ctx context.Context) error {
		o.ran = true
		o.rt, _ = Current()
		if fn != nil {
			return fn(ctx)
		}
		_, err := Execute(ctx, "ping", nil)
		return err
	}
	func() {
		defer func() { o.panicked = recover() }()
		o.err = RunAsScript(t.Context(), body, opts)
	}()
	o.events, o.exits, o.log = rec.list(), exits.calls, buf.String()
	return o
}

// want describes the shutdown events a run must have emitted.
type want struct {
	exitMode ExitMode
	stopMode StopMode
	owned    bool
	status   int
	result   CleanupResult
}

// checkEvents asserts the four events, in order, with their metadata.
func checkEvents(t *testing.T, o outcome, runID string, w want) {
	t.Helper()
	var names []string
	for _, e := range o.events {
		names = append(names, e.Name)
	}
	if !reflect.DeepEqual(names, ScriptShutdownEvents) {
		t.Fatalf("events = %v, want %v", names, ScriptShutdownEvents)
	}
	results := []CleanupResult{CleanupPending, CleanupPending, w.result, w.result}
	for i, e := range o.events {
		m := e.Metadata
		if m["run_id"] != runID || m["exit_mode"] != string(w.exitMode) ||
			m["stop_mode"] != string(w.stopMode) || m["owned"] != w.owned ||
			m["status"] != w.status || m["cleanup_result"] != string(results[i]) {
			t.Fatalf("%s metadata = %v, want run_id %s exit_mode %s stop_mode %s owned %v status %d cleanup_result %s",
				e.Name, m, runID, w.exitMode, w.stopMode, w.owned, w.status, results[i])
		}
	}
}

func TestResolveExitModePrecedence(t *testing.T) {
	cases := []struct {
		name    string
		opts    ScriptOptions
		env     map[string]string
		want    ExitMode
		warning string
	}{
		{"1 exit_mode option wins over all", ScriptOptions{ExitMode: ExitStop, Halt: Bool(true)},
			map[string]string{EnvScriptExit: "halt", EnvScriptHalt: "1"}, ExitStop, ""},
		{"1 exit_mode option auto is kept", ScriptOptions{ExitMode: ExitAuto}, nil, ExitAuto, ""},
		{"2 legacy halt true", ScriptOptions{Halt: Bool(true)},
			map[string]string{EnvScriptExit: "none"}, ExitHalt, ""},
		{"2 legacy halt false continues", ScriptOptions{Halt: Bool(false)},
			map[string]string{EnvScriptExit: "stop"}, ExitStop, ""},
		{"3 SNAKEPIT_SCRIPT_EXIT over legacy env", ScriptOptions{},
			map[string]string{EnvScriptExit: "auto", EnvScriptHalt: "true"}, ExitAuto, ""},
		{"4 legacy SNAKEPIT_SCRIPT_HALT truthy", ScriptOptions{},
			map[string]string{EnvScriptHalt: " YES "}, ExitHalt, ""},
		{"4 legacy SNAKEPIT_SCRIPT_HALT other value", ScriptOptions{},
			map[string]string{EnvScriptHalt: "nope"}, ExitNone, ""},
		{"5 default", ScriptOptions{}, nil, ExitNone, ""},
		{"invalid env falls back to legacy env", ScriptOptions{},
			map[string]string{EnvScriptExit: "bogus", EnvScriptHalt: "on"}, ExitHalt,
			`invalid SNAKEPIT_SCRIPT_EXIT value "bogus"; using exit_mode halt`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			got, warnings, err := resolveExitMode(&tc.opts, env)
			if err != nil || got != tc.want {
				t.Fatalf("resolveExitMode() = %q, %v; want %q", got, err, tc.want)
			}
			if tc.warning == "" && len(warnings) > 0 || tc.warning != "" &&
				(len(warnings) != 1 || warnings[0] != tc.warning) {
				t.Fatalf("warnings = %q, want %q", warnings, tc.warning)
			}
		})
	}
}

func TestResolveAuto(t *testing.T) {
	cases := []struct {
		owned, noHalt bool
		want          ExitMode
	}{
		{true, true, ExitStop},
		{true, false, ExitNone},
		{false, true, ExitNone}, // the embedded guardrail
		{false, false, ExitNone},
	}
	for _, tc := range cases {
		if got := resolveAuto(ExitAuto, tc.owned, tc.noHalt); got != tc.want {
			t.Errorf("resolveAuto(auto, owned %v, no-halt %v) = %s, want %s",
				tc.owned, tc.noHalt, got, tc.want)
		}
	}
}

// TestPrecedenceRowsThroughRunAsScript runs every precedence row and every
// SNAKEPIT_SCRIPT_EXIT value class on an embedded runtime (not owned by the
// script, so auto resolves to none and nothing stops it).
func TestPrecedenceRowsThroughRunAsScript(t *testing.T) {
	rt := startStd(t, testOptions(t, testConfig(1)))
	cases := []struct {
		name       string
		opts       ScriptOptions
		exit, halt *string
		effective  ExitMode
		exits      []string
		warning    string
	}{
		{"1 exit_mode option", ScriptOptions{ExitMode: ExitHalt}, str("stop"), nil, ExitHalt,
			[]string{"halt 0"}, ""},
		{"1 exit_mode auto on an embedded runtime", ScriptOptions{ExitMode: ExitAuto}, nil, nil,
			ExitNone, nil, ""},
		{"2 legacy halt option", ScriptOptions{Halt: Bool(true)}, str("none"), nil, ExitHalt,
			[]string{"halt 0"}, ""},
		{"3 env valid", ScriptOptions{}, str("stop"), str("1"), ExitStop,
			[]string{"stop 0", "blocked"}, ""},
		{"3 env mixed case with spaces", ScriptOptions{}, str("  HaLt \t"), nil, ExitHalt,
			[]string{"halt 0"}, ""},
		{"3 env empty is unset", ScriptOptions{}, str(""), str("true"), ExitHalt,
			[]string{"halt 0"}, ""},
		{"3 env blank is unset", ScriptOptions{}, str("   "), nil, ExitNone, nil, ""},
		{"3 env invalid warns with the fallback", ScriptOptions{}, str(" Bogus "), nil, ExitNone, nil,
			`invalid SNAKEPIT_SCRIPT_EXIT value \"Bogus\"; using exit_mode none`},
		{"3 env invalid falls back to legacy env", ScriptOptions{}, str("exit"), str("Y"), ExitHalt,
			[]string{"halt 0"}, `invalid SNAKEPIT_SCRIPT_EXIT value \"exit\"; using exit_mode halt`},
		{"4 legacy env", ScriptOptions{}, nil, str("on"), ExitHalt, []string{"halt 0"}, ""},
		{"5 default", ScriptOptions{}, nil, nil, ExitNone, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setScriptEnv(t, tc.exit, tc.halt)
			o := runScript(t, tc.opts, true, nil)
			if o.err != nil || o.panicked != nil {
				t.Fatalf("RunAsScript() = %v, panic %v", o.err, o.panicked)
			}
			checkEvents(t, o, rt.RunID(), want{tc.effective, StopIfStarted, false, 0, CleanupOK})
			if !reflect.DeepEqual(o.exits, tc.exits) {
				t.Fatalf("exit calls = %v, want %v", o.exits, tc.exits)
			}
			if tc.warning != "" && !hasWarning(o.log, tc.warning) {
				t.Fatalf("log = %s\nwant a warning %s", o.log, tc.warning)
			}
			if tc.warning == "" && strings.Contains(o.log, "invalid") {
				t.Fatalf("log = %s, want no invalid-value warning", o.log)
			}
			if rt.stopped() {
				t.Fatalf("embedded runtime stopped by a script that did not start it")
			}
		})
	}
}

// TestStopExitMatrix covers every row of the reference's stop_mode x
// exit_mode matrix.
func TestStopExitMatrix(t *testing.T) {
	cases := []struct {
		name        string
		embedded    bool
		stopMode    StopMode
		exitMode    ExitMode
		noHalt      bool
		effective   ExitMode
		wantStopped bool
		exits       []string
	}{
		{"owned if_started none", false, "", ExitNone, false, ExitNone, true, nil},
		{"owned if_started stop", false, StopIfStarted, ExitStop, false, ExitStop, true,
			[]string{"stop 0", "blocked"}},
		{"owned if_started halt", false, StopIfStarted, ExitHalt, false, ExitHalt, true,
			[]string{"halt 0"}},
		{"owned if_started auto on a no-halt host", false, "", ExitAuto, true, ExitStop, true,
			[]string{"stop 0", "blocked"}},
		{"owned if_started auto otherwise", false, "", ExitAuto, false, ExitNone, true, nil},
		{"owned never none", false, StopNever, ExitNone, false, ExitNone, false, nil},
		{"embedded if_started none", true, StopIfStarted, ExitNone, false, ExitNone, false, nil},
		{"embedded always none", true, StopAlways, ExitNone, false, ExitNone, true, nil},
		{"embedded if_started stop", true, StopIfStarted, ExitStop, false, ExitStop, false,
			[]string{"stop 0", "blocked"}},
		{"embedded never halt", true, StopNever, ExitHalt, false, ExitHalt, false, []string{"halt 0"}},
		{"embedded auto on a no-halt host stays none", true, "", ExitAuto, true, ExitNone, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setScriptEnv(t, nil, nil)
			t.Cleanup(func() { stopStd(t) })
			opts := ScriptOptions{StopMode: tc.stopMode, ExitMode: tc.exitMode}
			if tc.embedded {
				startStd(t, testOptions(t, testConfig(1)))
			}
			o := runScript(t, opts, tc.noHalt, nil)
			if o.err != nil || o.panicked != nil || !o.ran {
				t.Fatalf("RunAsScript() = %v, panic %v, ran %v", o.err, o.panicked, o.ran)
			}
			stopMode := tc.stopMode
			if stopMode == "" {
				stopMode = StopIfStarted
			}
			checkEvents(t, o, o.rt.RunID(), want{tc.effective, stopMode, !tc.embedded, 0, CleanupOK})
			if o.rt.stopped() != tc.wantStopped {
				t.Fatalf("runtime stopped = %v, want %v", o.rt.stopped(), tc.wantStopped)
			}
			if !reflect.DeepEqual(o.exits, tc.exits) {
				t.Fatalf("exit calls = %v, want %v", o.exits, tc.exits)
			}
			if tc.embedded && (tc.effective == ExitHalt || tc.effective == ExitStop) &&
				!hasWarning(o.log, "ends the whole process") {
				t.Fatalf("log = %s, want a warning that the exit ends the host process", o.log)
			}
		})
	}
}

func TestScriptStatus(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name      string
		fn        func(context.Context) error
		exitMode  ExitMode
		status    int
		exits     []string
		wantErr   error
		wantPanic bool
	}{
		{"return", func(context.Context) error { return nil }, ExitHalt, 0,
			[]string{"halt 0"}, nil, false},
		{"error", func(context.Context) error { return boom }, ExitHalt, 1,
			[]string{"halt 1"}, boom, false},
		{"panic with halt", func(context.Context) error { panic(boom) }, ExitHalt, 1,
			[]string{"halt 1"}, nil, true},
		{"panic with none re-panics after shutdown", func(context.Context) error { panic("oops") },
			ExitNone, 1, nil, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setScriptEnv(t, nil, nil)
			t.Cleanup(func() { stopStd(t) })
			o := runScript(t, ScriptOptions{ExitMode: tc.exitMode}, false, tc.fn)
			checkEvents(t, o, o.rt.RunID(), want{tc.exitMode, StopIfStarted, true, tc.status, CleanupOK})
			if !errors.Is(o.err, tc.wantErr) || !reflect.DeepEqual(o.exits, tc.exits) {
				t.Fatalf("RunAsScript() = %v with exits %v, want %v with %v",
					o.err, o.exits, tc.wantErr, tc.exits)
			}
			var pe *PanicError
			if tc.wantPanic {
				err, _ := o.panicked.(error)
				if !errors.As(err, &pe) || len(pe.Stack) == 0 {
					t.Fatalf("panic = %v, want a *PanicError with the stack", o.panicked)
				}
			} else if o.panicked != nil {
				t.Fatalf("panic = %v, want none", o.panicked)
			}
			if !o.rt.stopped() {
				t.Fatalf("owned runtime still running after the script")
			}
		})
	}
}

func TestCleanupResults(t *testing.T) {
	cases := []struct {
		name    string
		timeout time.Duration
		stray   bool
		replace func(*Runtime, context.Context, []process, time.Duration) error
		want    CleanupResult
	}{
		{"ok", 0, false, nil, CleanupOK},
		{"skipped when disabled", NoCleanup, true, nil, CleanupSkipped},
		{"timeout when a process outlives it", 200 * time.Millisecond, true, nil, CleanupTimeout},
		{"error when cleanup fails", 0, false,
			func(*Runtime, context.Context, []process, time.Duration) error {
				return errors.New("no /proc")
			},
			CleanupError},
		{"error when cleanup panics", 0, false,
			func(*Runtime, context.Context, []process, time.Duration) error { panic("cleanup bug") },
			CleanupError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setScriptEnv(t, nil, nil)
			rt := startStd(t, testOptions(t, testConfig(1)))
			if tc.stray {
				startStray(t, rt.StateDir(), true)
			}
			if tc.replace != nil {
				old := scriptCleanup
				scriptCleanup = tc.replace
				t.Cleanup(func() { scriptCleanup = old })
			}
			o := runScript(t, ScriptOptions{CleanupTimeout: tc.timeout}, false, nil)
			if o.err != nil {
				t.Fatalf("RunAsScript() = %v", o.err)
			}
			checkEvents(t, o, rt.RunID(), want{ExitNone, StopIfStarted, false, 0, tc.want})
			_, hasErr := o.events[2].Metadata["cleanup_error"].(error)
			if hasErr != (tc.want == CleanupError) {
				t.Fatalf("cleanup_error in metadata = %v, want it only for error", o.events[2].Metadata)
			}
		})
	}
}

func TestAwaitPool(t *testing.T) {
	setScriptEnv(t, nil, nil)
	idleCfg := testConfig(1)
	idleCfg.PoolingEnabled = false
	idle := newRuntime(t, testOptions(t, idleCfg))

	t.Run("timeout shuts down with status 1", func(t *testing.T) {
		t.Cleanup(func() { stopStd(t) })
		opts := ScriptOptions{AwaitPool: Bool(true), Timeout: 300 * time.Millisecond,
			Runtime: Options{NATSURL: idle.URL()}}
		o := runScript(t, opts, false, nil)
		var e *Error
		if !errors.As(o.err, &e) || e.Category != CategoryTimeout ||
			e.Reason != ReasonPoolInitializationTimeout {
			t.Fatalf("RunAsScript() = %v, want timeout/pool_initialization_timeout", o.err)
		}
		if o.ran {
			t.Fatalf("the function ran although the pools never became ready")
		}
		if len(o.events) != 4 || o.events[0].Metadata["status"] != 1 ||
			o.events[0].Metadata["owned"] != true {
			t.Fatalf("events = %v, want four with status 1, owned", o.events)
		}
	})
	t.Run("default follows pooling_enabled", func(t *testing.T) {
		t.Cleanup(func() { stopStd(t) })
		opts := testOptions(t, idleCfg)
		o := runScript(t, ScriptOptions{Runtime: opts}, false, func(context.Context) error { return nil })
		if o.err != nil || !o.ran {
			t.Fatalf("RunAsScript() = %v, ran %v; want the function run without waiting", o.err, o.ran)
		}
	})
}

func TestRestart(t *testing.T) {
	cases := []struct {
		name        string
		restart     RestartMode
		stopMode    StopMode
		ownConfig   bool
		wantRestart bool
	}{
		{"always", RestartAlways, "", false, true},
		{"never", RestartNever, StopAlways, true, false},
		{"auto with always and own config", RestartAuto, StopAlways, true, true},
		{"auto with if_started", RestartAuto, StopIfStarted, true, false},
		{"auto without own config", "", StopAlways, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setScriptEnv(t, nil, nil)
			t.Cleanup(func() { stopStd(t) })
			old := startStd(t, testOptions(t, testConfig(1)))
			opts := ScriptOptions{Restart: tc.restart, StopMode: tc.stopMode}
			if tc.ownConfig {
				opts.Runtime = testOptions(t, testConfig(1))
			}
			o := runScript(t, opts, false, nil)
			if o.err != nil {
				t.Fatalf("RunAsScript() = %v", o.err)
			}
			restarted := o.rt != old
			wantOldStopped := tc.wantRestart || tc.stopMode == StopAlways
			if restarted != tc.wantRestart || old.stopped() != wantOldStopped {
				t.Fatalf("restarted = %v (old stopped %v), want %v", restarted, old.stopped(), tc.wantRestart)
			}
			if o.events[0].Metadata["owned"] != tc.wantRestart {
				t.Fatalf("owned = %v, want %v", o.events[0].Metadata["owned"], tc.wantRestart)
			}
		})
	}
}

func TestInvalidScriptOptions(t *testing.T) {
	stopStd(t)
	cases := []struct {
		name string
		opts ScriptOptions
		want string
	}{
		{"exit_mode", ScriptOptions{ExitMode: "exit"}, `exit_mode "exit"`},
		{"stop_mode", ScriptOptions{StopMode: "sometimes"}, `stop_mode "sometimes"`},
		{"restart", ScriptOptions{Restart: "maybe"}, `restart "maybe"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ran := false
			err := RunAsScript(t.Context(), func(context.Context) error { ran = true; return nil }, tc.opts)
			if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) || ran {
				t.Fatalf("RunAsScript() = %v (ran %v), want ErrInvalidOption naming %s", err, ran, tc.want)
			}
			if _, err := Current(); !errors.Is(err, ErrNotStarted) {
				t.Fatalf("a runtime started despite invalid options")
			}
		})
	}
}

func TestNoHaltFromEnv(t *testing.T) {
	cases := []struct {
		value string
		want  bool
	}{{"1", true}, {" TRUE ", true}, {"on", true}, {"", false}, {"0", false}, {"no", false}}
	for _, tc := range cases {
		t.Setenv(EnvNoHalt, tc.value)
		if got := NoHalt(); got != tc.want {
			t.Errorf("NoHalt() with %s=%q = %v, want %v", EnvNoHalt, tc.value, got, tc.want)
		}
	}
	fakeExit(t, false)
	t.Setenv(EnvNoHalt, "1")
	if NoHalt() {
		t.Fatalf("NoHalt() = true after SetNoHalt(false)")
	}
}
