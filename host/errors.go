package host

import "errors"

var (
	// ErrStateDirLocked: another agent holds the state directory.
	ErrStateDirLocked = errors.New("host: state dir locked")
	// ErrBadAgentID: the agent id is not a single subject token.
	ErrBadAgentID = errors.New("host: bad agent id")
)
