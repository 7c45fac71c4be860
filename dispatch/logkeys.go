package dispatch

// Log keys, shared by every line this package writes.
const (
	keyRequestID = "request_id"
	keyCommand   = "command"
	keySubject   = "subject"
	keyReason    = "reason"
	keyAgentID   = "agent_id"
)
