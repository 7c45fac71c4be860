// Package dispatch is the wire contract in code: subjects, headers, error bodies
// and reply framing; the agent's NATS side (subscribe, decode, hand to a pool,
// reply) and the Go client. It must not supervise processes: pools are reached
// through the Pool interface declared here.
package dispatch

import (
	"strings"

	"github.com/snakepit-go/snakepit/schemas"
)

// Version is the product version agents report when none is set.
const Version = "0.1.0"

// DefaultPrefix is the first token of every subject.
const DefaultPrefix = "snakepit"

// Request and reply headers of the public contract.
const (
	HeaderSession      = "Snakepit-Session"
	HeaderAffinity     = "Snakepit-Affinity"
	HeaderTimeout      = "Snakepit-Timeout"
	HeaderQueueTimeout = "Snakepit-Queue-Timeout"
	HeaderRequestID    = "Snakepit-Request-Id"
	HeaderWorker       = "Snakepit-Worker"
	HeaderError        = "Snakepit-Error"
	HeaderSeq          = "Snakepit-Seq"
	HeaderStream       = "Snakepit-Stream"
	HeaderAck          = "Snakepit-Ack"
	HeaderSessionReset = "Snakepit-Session-Reset"
	HeaderTraceparent  = "traceparent"
	HeaderContentType  = "Content-Type"

	// The NATS services error headers, set on every error reply.
	HeaderServiceError     = "Nats-Service-Error"
	HeaderServiceErrorCode = "Nats-Service-Error-Code"

	ContentTypeOctetStream = "application/octet-stream"
	ContentTypeJSON        = "application/json"
)

// Subjects builds the subjects of one prefix.
type Subjects struct{ Prefix string }

// Exec is where one request for pool and command goes.
func (s Subjects) Exec(pool, command string) string {
	return s.Prefix + "." + pool + ".exec." + command
}

// DirectExec reaches one agent of the pool only.
func (s Subjects) DirectExec(pool, agentID, command string) string {
	return s.Prefix + "." + pool + ".agent." + agentID + ".exec." + command
}

// Stream is where a streaming request for pool and command goes.
func (s Subjects) Stream(pool, command string) string {
	return s.Prefix + "." + pool + ".stream." + command
}

// DirectStream reaches one agent of the pool only.
func (s Subjects) DirectStream(pool, agentID, command string) string {
	return s.Prefix + "." + pool + ".agent." + agentID + ".stream." + command
}

// Ack is where a reader acknowledges the chunks of one stream.
func (s Subjects) Ack(pool, agentID, streamID string) string {
	return s.Prefix + "." + pool + ".agent." + agentID + ".ack." + streamID
}

// Capacity is where an agent publishes its pool's capacity.
func (s Subjects) Capacity(pool, agentID string) string {
	return s.Prefix + "." + pool + ".capacity." + agentID
}

// Control is a fleet-wide control subject answered by every agent.
func (s Subjects) Control(verb string) string { return s.Prefix + ".ctl." + verb }

// AgentControl is a control subject answered by one agent only.
func (s Subjects) AgentControl(agentID, verb string) string {
	return s.Prefix + ".ctl.agent." + agentID + "." + verb
}

// QueueGroup is the queue group of a pool's agents.
func (s Subjects) QueueGroup(pool string) string { return s.Prefix + "." + pool }

// lastToken returns the part of subject after its last dot.
func lastToken(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// errorCode maps a category to the numeric Nats-Service-Error-Code.
func errorCode(e *schemas.Error) string {
	switch {
	case e.Reason == schemas.ReasonPoolNotFound:
		return "404"
	case e.Reason == schemas.ReasonPayloadTooLarge:
		return "413"
	case e.Category == schemas.CategoryValidation:
		return "400"
	case e.Category == schemas.CategoryTimeout:
		return "504"
	case e.Category == schemas.CategoryPool:
		return "503"
	}
	return "500"
}
