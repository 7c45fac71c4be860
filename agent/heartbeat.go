package agent

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/snakepit-go/snakepit/config"
	"github.com/snakepit-go/snakepit/schemas"
)

// heartbeat decides when to ping a worker and when it counts as hung. It is
// pure: every call takes the time, so tests drive it without a clock.
//
// A ping is missed when the next one is due and it is still unanswered. The
// worker is hung when max_missed_heartbeats pings in a row were missed, or when
// the oldest unanswered ping is older than timeout_ms; a hang that starts at t
// is therefore seen by t + ping_interval_ms + timeout_ms at the latest. Any
// PONG, late ones included, shows the worker's reader thread is alive and
// clears both counts.
type heartbeat struct {
	cfg config.Heartbeat

	seq      uint64
	nextPing time.Time
	// unanswered is when the oldest ping still without a PONG was sent; zero
	// when every ping was answered.
	unanswered time.Time
	missed     int
	hung       bool // reported once per episode
}

// hbAction is what the runner must do after tick.
type hbAction struct {
	ping   uint64 // send PING with this seq when non-zero
	hung   bool   // the worker just became hung
	reason string
}

func newHeartbeat(cfg config.Heartbeat, now time.Time) *heartbeat {
	return &heartbeat{cfg: cfg, nextPing: now.Add(cfg.InitialDelay)}
}

// next is when tick must run next.
func (h *heartbeat) next() time.Time {
	if h.unanswered.IsZero() || h.hung {
		return h.nextPing
	}
	deadline := h.unanswered.Add(h.cfg.Timeout)
	if deadline.Before(h.nextPing) {
		return deadline
	}
	return h.nextPing
}

// tick advances to now: it reports a hang, or a ping to send.
func (h *heartbeat) tick(now time.Time) hbAction {
	var act hbAction
	if !h.unanswered.IsZero() && !now.Before(h.unanswered.Add(h.cfg.Timeout)) {
		act.reason = fmt.Sprintf("no PONG within %v", h.cfg.Timeout)
	}
	if !now.Before(h.nextPing) {
		if !h.unanswered.IsZero() {
			h.missed++
		} else {
			h.unanswered = now
		}
		if h.missed >= h.cfg.MaxMissed && act.reason == "" {
			act.reason = fmt.Sprintf("%d heartbeats missed in a row", h.missed)
		}
		h.seq++
		act.ping = h.seq
		h.nextPing = now.Add(h.cfg.PingInterval)
	}
	if act.reason != "" && !h.hung {
		h.hung, act.hung = true, true
	}
	return act
}

// pong records an answer; it reports whether the worker had been hung.
func (h *heartbeat) pong() (recovered bool) {
	recovered = h.hung
	h.unanswered, h.missed, h.hung = time.Time{}, 0, false
	return recovered
}

// monitored is what the heartbeat runner needs of a worker.
type monitored interface {
	ping(seq uint64) error
	pongs() <-chan uint64
	done() <-chan struct{}
}

// hungFunc is called once per hang with the reason.
type hungFunc func(reason string)

// runHeartbeat pings w until it exits. With dependent true a hang calls onHung
// (which kills the worker); otherwise it is only logged.
func runHeartbeat(w monitored, cfg config.Heartbeat, log zerolog.Logger, onHung hungFunc) {
	hb := newHeartbeat(cfg, time.Now())
	t := time.NewTimer(time.Until(hb.next()))
	defer t.Stop()
	for {
		select {
		case <-w.done():
			return
		case <-w.pongs():
			if hb.pong() {
				log.Info().Msg("worker answers heartbeats again")
			}
			continue
		case <-t.C:
		}
		act := hb.tick(time.Now())
		if act.hung {
			if !cfg.Dependent {
				log.Warn().Str(keyReason, act.reason).
					Msg("worker missed heartbeats; heartbeat.dependent is false, leaving it running")
			} else {
				onHung(act.reason)
			}
		}
		if act.ping != 0 {
			_ = w.ping(act.ping)
		}
		t.Reset(time.Until(hb.next()))
	}
}

// hungError is the error of a request whose worker was killed as hung.
func hungError(id, reason string) *schemas.Error {
	return schemas.NewError(schemas.CategoryWorker, schemas.ReasonWorkerHung,
		"worker %s stopped answering heartbeats (%s) and was killed", id, reason).
		WithDetail("worker_id", id)
}
