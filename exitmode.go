package snakepit

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// ExitMode says what RunAsScript does with the process after cleanup.
type ExitMode string

// Exit modes of the reference.
const (
	// ExitNone returns (or re-panics) to the caller; the process goes on.
	ExitNone ExitMode = "none"
	// ExitHalt ends the process at once with the status (os.Exit): deferred
	// functions do not run.
	ExitHalt ExitMode = "halt"
	// ExitStop ends the process cooperatively: it calls the stop function
	// (SetStopFunc) with the status and blocks the caller until the process
	// exits.
	ExitStop ExitMode = "stop"
	// ExitAuto is ExitStop when this call started the runtime and the program
	// is a long-running host (NoHalt), else ExitNone.
	ExitAuto ExitMode = "auto"
)

// StopMode says whether RunAsScript stops the runtime.
type StopMode string

// Stop modes of the reference.
const (
	// StopIfStarted stops the runtime only if this call started it.
	StopIfStarted StopMode = "if_started"
	// StopAlways stops it even when another part of the program started it.
	StopAlways StopMode = "always"
	// StopNever leaves it running.
	StopNever StopMode = "never"
)

// RestartMode says whether RunAsScript restarts a runtime that already runs.
type RestartMode string

// Restart modes: the reference's :auto, true and false.
const (
	// RestartAuto restarts only with StopAlways and when the call brings a
	// runtime configuration of its own (ScriptOptions.Runtime sets Config,
	// ConfigFile or NATSURL): the Go counterpart of the reference restarting
	// to apply a Mix project's script configuration.
	RestartAuto RestartMode = "auto"
	// RestartAlways stops a running runtime, cleans up its run and starts a
	// new one, which this call then owns.
	RestartAlways RestartMode = "always"
	// RestartNever uses a running runtime as it is.
	RestartNever RestartMode = "never"
)

// Environment variables of the script lifecycle.
const (
	// EnvScriptExit sets the exit mode when no option does: none, halt,
	// stop or auto, trimmed and in any case; empty is unset.
	EnvScriptExit = "SNAKEPIT_SCRIPT_EXIT"
	// EnvScriptHalt is the deprecated halt flag: 1, true, yes, y or on
	// (trimmed, any case) mean exit mode halt.
	EnvScriptHalt = "SNAKEPIT_SCRIPT_HALT"
	// EnvNoHalt marks the program a long-running host (see NoHalt) when
	// SetNoHalt was never called; same truthy values as EnvScriptHalt.
	EnvNoHalt = "SNAKEPIT_NO_HALT"
)

// lookupEnv reads the environment; tests give their own.
type lookupEnv func(string) (string, bool)

// resolveExitMode applies the reference's precedence: the ExitMode option,
// the legacy Halt option, SNAKEPIT_SCRIPT_EXIT, the legacy
// SNAKEPIT_SCRIPT_HALT, then none. It returns the warnings to log.
func resolveExitMode(opts *ScriptOptions, env lookupEnv) (ExitMode, []string, error) {
	if opts.ExitMode != "" {
		switch opts.ExitMode {
		case ExitNone, ExitHalt, ExitStop, ExitAuto:
			return opts.ExitMode, nil, nil
		}
		return "", nil, fmt.Errorf("run as script: exit_mode %q: want none, halt, stop or auto: %w",
			opts.ExitMode, ErrInvalidOption)
	}
	if opts.Halt != nil && *opts.Halt {
		return ExitHalt, nil, nil
	}
	raw, _ := env(EnvScriptExit)
	value := strings.ToLower(strings.TrimSpace(raw))
	switch ExitMode(value) {
	case ExitNone, ExitHalt, ExitStop, ExitAuto:
		return ExitMode(value), nil, nil
	}
	fallback := legacyHaltEnv(env)
	if value == "" {
		return fallback, nil, nil
	}
	warning := fmt.Sprintf("invalid %s value %q; using exit_mode %s", EnvScriptExit,
		strings.TrimSpace(raw), fallback)
	return fallback, []string{warning}, nil
}

// legacyHaltEnv is rule 4 and the default: halt when SNAKEPIT_SCRIPT_HALT is
// truthy, else none.
func legacyHaltEnv(env lookupEnv) ExitMode {
	if v, _ := env(EnvScriptHalt); truthy(v) {
		return ExitHalt
	}
	return ExitNone
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "y", "on":
		return true
	}
	return false
}

// resolveAuto turns auto into stop or none. The guardrail: a runtime this
// call did not start never yields stop, whatever NoHalt says.
func resolveAuto(mode ExitMode, owned, noHalt bool) ExitMode {
	if mode != ExitAuto {
		return mode
	}
	if owned && noHalt {
		return ExitStop
	}
	return ExitNone
}

func resolveStopMode(m StopMode) (StopMode, error) {
	switch m {
	case "":
		return StopIfStarted, nil
	case StopIfStarted, StopAlways, StopNever:
		return m, nil
	}
	return "", fmt.Errorf("run as script: stop_mode %q: want if_started, always or never: %w",
		m, ErrInvalidOption)
}

func resolveRestart(m RestartMode) (RestartMode, error) {
	switch m {
	case "":
		return RestartAuto, nil
	case RestartAuto, RestartAlways, RestartNever:
		return m, nil
	}
	return "", fmt.Errorf("run as script: restart %q: want auto, always or never: %w",
		m, ErrInvalidOption)
}

// exitSettings are the program-wide settings of the exit path.
var exitSettings struct {
	mu        sync.Mutex
	noHaltSet bool
	noHalt    bool
	stop      func(status int)
}

// SetNoHalt declares (or withdraws) that the program is a long-running host:
// its process is meant to outlive the script function, as the BEAM does when
// run with --no-halt. It is what makes ExitAuto resolve to ExitStop. Once
// called, it overrides SNAKEPIT_NO_HALT.
func SetNoHalt(on bool) {
	exitSettings.mu.Lock()
	defer exitSettings.mu.Unlock()
	exitSettings.noHaltSet, exitSettings.noHalt = true, on
}

// NoHalt reports whether the program is a long-running host: the value given
// to SetNoHalt, or, if it was never called, whether SNAKEPIT_NO_HALT is
// truthy.
func NoHalt() bool {
	exitSettings.mu.Lock()
	defer exitSettings.mu.Unlock()
	if exitSettings.noHaltSet {
		return exitSettings.noHalt
	}
	return truthy(os.Getenv(EnvNoHalt))
}

// SetStopFunc sets how ExitStop ends the process: f should shut the program
// down in order and exit with status. nil restores the default, which exits
// at once with status, as ExitHalt does.
func SetStopFunc(f func(status int)) {
	exitSettings.mu.Lock()
	defer exitSettings.mu.Unlock()
	exitSettings.stop = f
}

func stopFunc() func(status int) {
	exitSettings.mu.Lock()
	defer exitSettings.mu.Unlock()
	if exitSettings.stop == nil {
		return func(status int) { osExit(status) }
	}
	return exitSettings.stop
}

// The process-ending calls, replaced by tests that run in-process.
var (
	osExit = os.Exit
	// blockForever keeps an ExitStop caller waiting for the process to end.
	blockForever = func() { select {} }
)
