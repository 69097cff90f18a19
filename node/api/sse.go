package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/sealpost/sealpost/node"
)

// Event is one server-sent event of GET /v1/events, as the client decodes
// it (the daemon sends node.Event, which has the same JSON form). The SSE
// "event:" field repeats Type, so clients may dispatch on either.
type Event struct {
	// Type is the event's name: peer.connected, peer.disconnected and, as the
	// features land, message.received, message.state, identity.changed,
	// contact.request, relay.status.
	Type string `json:"type"`
	// Time is when the node saw the event.
	Time time.Time `json:"time"`
	// Data is the event's payload; its shape depends on Type.
	Data json.RawMessage `json:"data,omitempty"`
}

// streamEvents writes the node's events from ch to w as server-sent events until ch is
// closed or the request ends (client gone, or Server.Shutdown). It sends a
// comment every heartbeat so idle streams stay open and a gone client is
// noticed.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, ch <-chan node.Event) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, ": sealpost events\n\n"); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
		case ev, ok := <-ch:
			if !ok {
				return
			}
			b, err := json.Marshal(ev)
			if err != nil {
				s.log.Error("api: encode event", "type", ev.Type, "err", err)
				continue
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, b); err != nil {
				return
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}
