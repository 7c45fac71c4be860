package snakepit

import (
	"errors"

	"github.com/snakepit-go/snakepit/schemas"
)

// Error is the error of a failed call: the same type as dispatch.Error and
// schemas.Error, so errors.As(err, &e) with e *snakepit.Error works on an error
// from any package. Match a case with errors.Is(err, &Error{Category: ...,
// Reason: ...}); an empty field matches anything.
type Error = schemas.Error

// The reference's error categories.
const (
	CategoryTimeout    = schemas.CategoryTimeout
	CategoryWorker     = schemas.CategoryWorker
	CategoryValidation = schemas.CategoryValidation
	CategoryPool       = schemas.CategoryPool
)

// Reasons the facade itself produces; the others are in schemas.
const (
	// ReasonPoolInitializationTimeout: AwaitReady (or RunAsScript waiting for
	// the pools) ran out of time. Category timeout.
	ReasonPoolInitializationTimeout = "pool_initialization_timeout"
	// ReasonCleanupTimeout: Cleanup found processes of the run that outlived
	// its timeout. Category timeout; Details["pids"] lists them.
	ReasonCleanupTimeout = "cleanup_timeout"
	// ReasonPoolNotFound: no pool of that name. Category pool.
	ReasonPoolNotFound = schemas.ReasonPoolNotFound
)

var (
	// ErrNotStarted: a package-level function was called before Start (or
	// outside RunAsScript), or after Stop.
	ErrNotStarted = errors.New("snakepit: not started")
	// ErrAlreadyStarted: Start was called while the process-wide runtime runs.
	ErrAlreadyStarted = errors.New("snakepit: already started")
	// ErrInvalidOption: a script option or SNAKEPIT_* value is not one the
	// reference accepts; the message names it.
	ErrInvalidOption = errors.New("snakepit: invalid option")
)
