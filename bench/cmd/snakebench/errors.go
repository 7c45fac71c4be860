package main

import "errors"

// Sentinels of the harness.
var (
	// errFloorFailed is a floor responder that could not answer.
	errFloorFailed = errors.New("snakebench: floor responder failed")
)
