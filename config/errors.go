package config

import "errors"

// ErrInvalid wraps every configuration error; the message names the key.
var ErrInvalid = errors.New("config: invalid")
