// Package metricset registers a service's Prometheus collectors as one
// set, so that a failed start or a Close takes them all back and the next
// service of the same kind (a restart, another node in the process) can
// register its own.
package metricset

import "github.com/prometheus/client_golang/prometheus"

// Set is the collectors one service registered.
type Set struct {
	reg prometheus.Registerer
	own []prometheus.Collector
}

// Register registers cs with reg (nil: registers nothing). On an error
// the collectors registered so far are unregistered.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) (*Set, error) {
	s := &Set{reg: reg}
	if reg == nil {
		return s, nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			s.Unregister()
			return nil, err
		}
		s.own = append(s.own, c)
	}
	return s, nil
}

// Unregister takes the set's collectors back. It is idempotent.
func (s *Set) Unregister() {
	for _, c := range s.own {
		s.reg.Unregister(c)
	}
	s.own = nil
}
