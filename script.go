package snakepit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/telemetry"
)

// The four events of the script shutdown, emitted in this order by every
// RunAsScript. Each carries the metadata keys run_id, exit_mode, stop_mode,
// owned (the reference's owned?), status and cleanup_result, plus
// cleanup_error when cleanup_result is error.
const (
	// EventShutdownStart: before cleanup begins; cleanup_result pending.
	EventShutdownStart = "snakepit.script.shutdown.start"
	// EventShutdownStop: after the stop decision was carried out; pending.
	EventShutdownStop = "snakepit.script.shutdown.stop"
	// EventShutdownCleanup: after cleanup completed.
	EventShutdownCleanup = "snakepit.script.shutdown.cleanup"
	// EventShutdownExit: before the exit decision is applied.
	EventShutdownExit = "snakepit.script.shutdown.exit"
)

// CleanupResult is the cleanup_result metadata of the shutdown events.
type CleanupResult string

// Cleanup results of the reference; CleanupError stands for {:error, reason},
// the reason being in the cleanup_error metadata.
const (
	CleanupPending CleanupResult = "pending"
	CleanupOK      CleanupResult = "ok"
	CleanupTimeout CleanupResult = "timeout"
	CleanupSkipped CleanupResult = "skipped"
	CleanupError   CleanupResult = "error"
)

// NoCleanup as ScriptOptions.CleanupTimeout skips cleanup (the reference's
// cleanup_timeout <= 0).
const NoCleanup time.Duration = -1

// ScriptOptions are RunAsScript's options. Zero values are the defaults.
type ScriptOptions struct {
	// Timeout bounds the wait for the pools. Default DefaultAwaitTimeout.
	Timeout time.Duration
	// ShutdownTimeout bounds stopping the runtime. Default
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// CleanupTimeout bounds the cleanup of the run's processes. Default
	// DefaultCleanupTimeout; negative (NoCleanup) skips cleanup.
	CleanupTimeout time.Duration
	// Restart handles a runtime that already runs. Default RestartAuto.
	Restart RestartMode
	// AwaitPool waits for every pool to be ready before fn runs. Default:
	// pooling_enabled of the runtime's configuration.
	AwaitPool *bool
	// ExitMode is what happens to the process after cleanup. Default: the
	// legacy Halt option, else SNAKEPIT_SCRIPT_EXIT, else the legacy
	// SNAKEPIT_SCRIPT_HALT, else ExitNone.
	ExitMode ExitMode
	// StopMode says whether the runtime stops. Default StopIfStarted.
	StopMode StopMode
	// Halt is the deprecated flag: true means ExitHalt when ExitMode is unset.
	Halt *bool
	// Runtime starts the process-wide runtime when none runs; its Log also
	// receives the script's warnings.
	Runtime Options
}

// Bool returns a pointer to v, for the optional flags of ScriptOptions.
func Bool(v bool) *bool { return &v }

// PanicError is how RunAsScript re-panics after shutdown when fn panicked
// and the exit mode lets the caller go on: the panic value with the stack of
// the original panic.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("script function panicked: %v\n\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// script is one RunAsScript call after its options were resolved.
type script struct {
	opts     ScriptOptions
	log      zerolog.Logger
	exitMode ExitMode
	stopMode StopMode
	restart  RestartMode
	rt       *Runtime
	owned    bool
}

// scriptCleanup is the bounded cleanup the shutdown runs; tests replace it.
var scriptCleanup = (*Runtime).cleanup

// RunAsScript starts the process-wide runtime if none runs, waits for its
// pools, runs fn, and shuts down in the reference's order: emit the start
// event, capture the run's processes, stop the runtime when the stop mode
// says so, emit the stop event, clean up within the cleanup timeout, emit
// the cleanup and exit events, then apply the exit mode.
//
// The status is 0 when fn returns nil and 1 when it returns an error or
// panics. With ExitNone, RunAsScript returns fn's error, or panics again with
// a *PanicError; with ExitHalt or ExitStop the process ends with the status.
// When the pools are not ready in time, the shutdown runs with status 1 and
// the *Error (category timeout, reason pool_initialization_timeout) is
// returned. Invalid options return an error wrapping ErrInvalidOption before
// anything starts.
func RunAsScript(ctx context.Context, fn func(context.Context) error, opts ScriptOptions) error {
	s, err := newScript(opts, os.LookupEnv)
	if err != nil {
		return err
	}
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("run as script: %w", err)
	}
	if s.awaitPool() {
		if err := s.rt.AwaitReady(ctx, s.opts.Timeout); err != nil {
			if s.exitMode != ExitNone {
				// The process ends in shutdown: nobody would see the error.
				s.log.Error().Err(err).Msg("pools failed to initialize")
			}
			s.shutdown(1)
			return err
		}
	}
	status, panicked, fnErr := runFunc(ctx, fn)
	s.shutdown(status)
	if panicked != nil {
		panic(panicked)
	}
	return fnErr
}

// newScript validates the options and resolves the requested exit mode,
// logging the warnings of that resolution.
func newScript(opts ScriptOptions, env lookupEnv) (*script, error) {
	s := &script{opts: opts, log: opts.Runtime.Log}
	var err error
	if s.stopMode, err = resolveStopMode(opts.StopMode); err != nil {
		return nil, err
	}
	if s.restart, err = resolveRestart(opts.Restart); err != nil {
		return nil, err
	}
	mode, warnings, err := resolveExitMode(&s.opts, env)
	if err != nil {
		return nil, err
	}
	s.exitMode = mode
	for _, w := range warnings {
		s.log.Warn().Msg(w)
	}
	s.opts.Timeout = orDefault(opts.Timeout, DefaultAwaitTimeout)
	s.opts.ShutdownTimeout = orDefault(opts.ShutdownTimeout, DefaultShutdownTimeout)
	s.opts.CleanupTimeout = orDefault(opts.CleanupTimeout, DefaultCleanupTimeout)
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// start restarts a running runtime if the restart mode says so, makes sure
// the process-wide runtime runs, records ownership and resolves auto.
func (s *script) start(ctx context.Context) error {
	if cur, err := Current(); err == nil && s.shouldRestart() {
		s.log.Info().Str(keyRunID, cur.RunID()).Msg("restarting the runtime for this script")
		targets := cur.captureTargets()
		s.stopRuntime(cur)
		if s.opts.CleanupTimeout > 0 {
			err := scriptCleanup(cur, context.Background(), targets, s.opts.CleanupTimeout)
			if err != nil {
				s.log.Warn().Err(err).Str(keyRunID, cur.RunID()).Msg("cleanup of the replaced run")
			}
		}
	}
	rt, owned, err := ensureStarted(ctx, s.opts.Runtime)
	if err != nil {
		return err
	}
	s.rt, s.owned = rt, owned
	s.log = s.log.With().Str(keyRunID, rt.RunID()).Logger()
	requested := s.exitMode
	s.exitMode = resolveAuto(requested, owned, NoHalt())
	s.log.Debug().Str(keyExitMode, string(s.exitMode)).Str("requested_exit_mode", string(requested)).
		Bool(keyOwned, owned).Msg("script exit mode resolved")
	if !owned && (s.exitMode == ExitHalt || s.exitMode == ExitStop) {
		s.log.Warn().Str(keyExitMode, string(s.exitMode)).
			Msg("exit mode ends the whole process although this script did not start the runtime")
	}
	return nil
}

func (s *script) shouldRestart() bool {
	switch s.restart {
	case RestartAlways:
		return true
	case RestartNever:
		return false
	}
	r := s.opts.Runtime
	ownConfig := r.Config != nil || r.ConfigFile != "" || r.NATSURL != ""
	return s.stopMode == StopAlways && ownConfig
}

func (s *script) awaitPool() bool {
	if s.opts.AwaitPool != nil {
		return *s.opts.AwaitPool
	}
	return s.rt.cfg.PoolingEnabled
}

// runFunc runs fn and turns its outcome into a status.
func runFunc(ctx context.Context, fn func(context.Context) error) (
	status int, p *PanicError, err error) {
	defer func() {
		if r := recover(); r != nil {
			status, p = 1, &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	if err = fn(ctx); err != nil {
		return 1, nil, err
	}
	return 0, nil, nil
}

// shutdown is the reference's shutdown state machine, steps a to e.
func (s *script) shutdown(status int) {
	s.emit(EventShutdownStart, status, CleanupPending, nil)
	var targets []process
	if s.opts.CleanupTimeout > 0 {
		targets = s.rt.captureTargets()
	}
	if s.stopMode == StopAlways || (s.stopMode == StopIfStarted && s.owned) {
		s.stopRuntime(s.rt)
	}
	s.emit(EventShutdownStop, status, CleanupPending, nil)
	result, cerr := s.cleanup(targets)
	s.emit(EventShutdownCleanup, status, result, cerr)
	s.emit(EventShutdownExit, status, result, cerr)
	s.exit(status)
}

// stopRuntime stops rt within the shutdown timeout; the process-wide slot is
// freed first so a later Start gets a new runtime.
func (s *script) stopRuntime(rt *Runtime) {
	std.mu.Lock()
	if std.rt == rt {
		std.rt, std.last = nil, rt
	}
	std.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	rt.Stop(ctx)
	if ctx.Err() != nil {
		s.log.Warn().Int64("timeout_ms", s.opts.ShutdownTimeout.Milliseconds()).
			Msg("runtime stop did not finish within the shutdown timeout; going on")
	}
}

// cleanup runs the bounded cleanup and names its result.
func (s *script) cleanup(targets []process) (result CleanupResult, err error) {
	if s.opts.CleanupTimeout <= 0 {
		return CleanupSkipped, nil
	}
	defer func() {
		if r := recover(); r != nil {
			result, err = CleanupError, fmt.Errorf("cleanup run %s panicked: %v", s.rt.RunID(), r)
		}
	}()
	err = scriptCleanup(s.rt, context.Background(), targets, s.opts.CleanupTimeout)
	var e *Error
	switch {
	case err == nil:
		return CleanupOK, nil
	case errors.As(err, &e) && e.Reason == ReasonCleanupTimeout:
		s.log.Warn().Err(err).Msg("cleanup timed out")
		return CleanupTimeout, nil
	}
	s.log.Warn().Err(err).Msg("cleanup failed")
	return CleanupError, err
}

func (s *script) emit(name string, status int, result CleanupResult, cerr error) {
	meta := map[string]any{
		keyRunID:         s.rt.RunID(),
		keyExitMode:      string(s.exitMode),
		keyStopMode:      string(s.stopMode),
		keyOwned:         s.owned,
		keyStatus:        status,
		keyCleanupResult: string(result),
	}
	if cerr != nil {
		meta[keyCleanupError] = cerr
	}
	telemetry.Emit(name, map[string]float64{}, meta)
}

// exit applies the exit mode. Nothing is written on this path.
func (s *script) exit(status int) {
	switch s.exitMode {
	case ExitHalt:
		osExit(status)
	case ExitStop:
		stopFunc()(status)
		blockForever()
	}
}

// Metadata keys of the shutdown events beyond the log keys.
const (
	keyCleanupResult = "cleanup_result"
	keyCleanupError  = "cleanup_error"
)
