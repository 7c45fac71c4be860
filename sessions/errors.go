package sessions

import "errors"

var (
	// ErrInvalidID: a session id is empty, longer than 256 bytes or not UTF-8.
	ErrInvalidID = errors.New("sessions: invalid session id")
	// ErrHeld: another agent won the lease.
	ErrHeld = errors.New("sessions: lease held by another agent")
	// ErrConflict: the lease changed since it was read.
	ErrConflict = errors.New("sessions: lease changed concurrently")

	// Store errors: a Store wraps these so the manager can tell the cases apart.
	ErrStoreExists   = errors.New("sessions: store key exists")
	ErrStoreRevision = errors.New("sessions: store revision mismatch")
	ErrStoreNotFound = errors.New("sessions: store key not found")
)
