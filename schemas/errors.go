package schemas

import "errors"

var (
	// ErrFrameTooLarge is returned for a frame past MaxFrame.
	ErrFrameTooLarge = errors.New("schemas: frame too large")
	// ErrBadFrame is returned for a frame whose header cannot be trusted.
	ErrBadFrame = errors.New("schemas: malformed frame")
)

// ErrElsewhere marks a request that belongs to another agent (its session's lease
// is held there): it is forwarded, not failed, and not counted here.
var ErrElsewhere = errors.New("schemas: request belongs to another agent")
