package agent

// Log keys, shared by every line this package writes.
const (
	keyPool      = "pool"
	keyAgentID   = "agent_id"
	keyWorkerID  = "worker_id"
	keyPID       = "pid"
	keyRequestID = "request_id"
	keyCommand   = "command"
	keyExitCode  = "exit_code"
	keySignal    = "signal"
	keyStream    = "stream"
	keyAttempt   = "attempt"
	keyReason    = "reason"
	keyDelayMs   = "delay_ms"
	keyIncarn    = "incarnation"
	keyElapsedMs = "elapsed_ms"
	keyReplaced  = "replaced_pid"
	keyInTime    = "in_time"
	keyPIDs      = "pids"
	keyOldServe  = "old_serving"
)
