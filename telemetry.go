package snakepit

import "github.com/snakepit-go/snakepit/telemetry"

// Event is one telemetry event: a dotted name, measurements and metadata.
// Events live in the telemetry package so that every package, the pools
// included, can emit them; these names are here for one import.
type Event = telemetry.Event

// Handler receives telemetry events on the emitter's goroutine.
type Handler = telemetry.Handler

// AttachTelemetry calls h for every event emitted under one of names (for
// example EventShutdownStart) and returns the function that detaches it.
func AttachTelemetry(h Handler, names ...string) (detach func()) {
	return telemetry.Attach(h, names...)
}

// ScriptShutdownEvents are the four shutdown events in the order RunAsScript
// emits them.
var ScriptShutdownEvents = []string{
	EventShutdownStart, EventShutdownStop, EventShutdownCleanup, EventShutdownExit,
}
