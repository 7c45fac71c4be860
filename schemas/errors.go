package schemas

import "errors"

var (
	// ErrFrameTooLarge is returned for a frame past MaxFrame.
	ErrFrameTooLarge = errors.New("schemas: frame too large")
	// ErrBadFrame is returned for a frame whose header cannot be trusted.
	ErrBadFrame = errors.New("schemas: malformed frame")
)
