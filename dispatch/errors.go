package dispatch

import "errors"

// ErrRawResult: a raw-bytes result cannot be decoded as JSON.
var ErrRawResult = errors.New("dispatch: result is raw bytes, not JSON")

// ErrRefused: an agent refused a control request.
var ErrRefused = errors.New("dispatch: refused by the agent")
