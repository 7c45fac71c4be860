package config

import "errors"

var (
	// ErrInvalid wraps every configuration error; the message names the key.
	ErrInvalid = errors.New("config: invalid")
	// ErrPoolNotFound: no pool of that name is configured.
	ErrPoolNotFound = errors.New("config: pool not found")
)
