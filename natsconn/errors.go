package natsconn

import "errors"

var (
	// ErrBadSetting: two settings contradict each other, or one is malformed.
	ErrBadSetting = errors.New("natsconn: conflicting or malformed settings")
	// ErrBadFile: a file named by a setting cannot be read or parsed.
	ErrBadFile = errors.New("natsconn: bad file")
)
