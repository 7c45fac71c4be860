// Package telemetry is the process-wide event bus of Snakepit: code that has
// something to report emits a named event with measurements and metadata, and
// handlers attached to that name receive it synchronously, in the order they were
// attached. It imports nothing of this module, so every package (the agent's pools
// as well as the root facade) can emit through it. It must not log, buffer or
// spawn goroutines: a handler runs on the emitter's goroutine and should be quick.
package telemetry

import (
	"sync"
	"sync/atomic"
)

// Event is one emitted event.
type Event struct {
	// Name is dotted, most general first: "snakepit.script.shutdown.start".
	Name string
	// Measurements are the numbers of the event (counts, durations in ms).
	Measurements map[string]float64
	// Metadata describes the event; keys are snake_case.
	Metadata map[string]any
}

// Handler receives events. A handler that panics is detached and the panic is
// dropped, so one bad handler cannot break the emitter.
type Handler func(Event)

// attachment is one handler attached to one event name.
type attachment struct {
	id uint64
	h  Handler
}

// bus holds every attachment; a copy-on-write map keeps Emit lock-free.
type bus struct {
	nextID atomic.Uint64

	mu sync.Mutex
	// byName is replaced, never mutated, while mu is held.
	byName atomic.Pointer[map[string][]attachment]
}

var global bus

// Attach calls h for every event emitted under one of names and returns the
// function that detaches it. Calling the detach function twice is harmless.
func Attach(h Handler, names ...string) (detach func()) {
	id := global.nextID.Add(1)
	global.mu.Lock()
	next := global.copyLocked()
	for _, n := range names {
		next[n] = append(next[n], attachment{id: id, h: h})
	}
	global.byName.Store(&next)
	global.mu.Unlock()
	return func() { global.detach(id) }
}

// Emit delivers an event to every handler attached to name. Measurements and
// metadata may be nil.
func Emit(name string, measurements map[string]float64, metadata map[string]any) {
	m := global.byName.Load()
	if m == nil {
		return
	}
	ev := Event{Name: name, Measurements: measurements, Metadata: metadata}
	for _, a := range (*m)[name] {
		deliver(a, ev)
	}
}

func deliver(a attachment, ev Event) {
	defer func() {
		if recover() != nil {
			global.detach(a.id)
		}
	}()
	a.h(ev)
}

func (b *bus) detach(id uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	next := b.copyLocked()
	for name, list := range next {
		kept := make([]attachment, 0, len(list))
		for _, a := range list {
			if a.id != id {
				kept = append(kept, a)
			}
		}
		if len(kept) == 0 {
			delete(next, name)
			continue
		}
		next[name] = kept
	}
	b.byName.Store(&next)
}

// copyLocked returns a fresh copy of the attachments; the lists are copied
// too, so appending to one never writes into a list a reader holds.
func (b *bus) copyLocked() map[string][]attachment {
	next := map[string][]attachment{}
	if cur := b.byName.Load(); cur != nil {
		for name, list := range *cur {
			next[name] = append([]attachment(nil), list...)
		}
	}
	return next
}
