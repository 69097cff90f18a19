package home

import (
	"fmt"

	"github.com/sealpost/sealpost/node"
)

// ConnConfig is the [connections] section of config.toml: the limits of
// the libp2p connection and resource managers. A key left out or zero
// keeps the profile's value.
type ConnConfig struct {
	Low          int `toml:"low" comment:"Above 'high' connections, the connection manager closes the least useful ones\ndown to 'low'. Connections of clients subscribed to a mailbox here are never\nclosed that way."`
	High         int `toml:"high"`
	MaxOpenFiles int `toml:"max_open_files" comment:"File descriptors libp2p may use (connections and listeners). Keep it under\nthe process's limit (ulimit -n, LimitNOFILE in a systemd unit)."`
	MaxMemoryMiB int `toml:"max_memory_mib" comment:"Memory libp2p may reserve for connections and streams, in MiB."`
}

// ConnConfigOf returns c's limits as a [connections] section.
func ConnConfigOf(c node.Config) ConnConfig {
	return ConnConfig{Low: c.ConnLow, High: c.ConnHigh, MaxOpenFiles: c.MaxFDs, MaxMemoryMiB: int(c.MaxMemory >> 20)}
}

// NodeConfig returns the node settings of this home: the defaults of its
// profile, raised to the relay profile's connection limits when the relay
// service runs on a home of another profile (a personal home made a relay
// with `daemon --relay-service`), then the [connections] section's values.
func (c Config) NodeConfig() (node.Config, error) {
	nc, err := node.Defaults(node.Profile(c.Profile))
	if err != nil {
		return nc, err
	}
	if c.RelayService && nc.Profile != node.Relay {
		r, err := node.Defaults(node.Relay)
		if err != nil {
			return nc, err
		}
		nc.ConnLow, nc.ConnHigh = max(nc.ConnLow, r.ConnLow), max(nc.ConnHigh, r.ConnHigh)
		nc.MaxFDs, nc.MaxMemory = max(nc.MaxFDs, r.MaxFDs), max(nc.MaxMemory, r.MaxMemory)
	}
	if k := c.Connections; k != nil {
		if k.Low < 0 || k.High < 0 || k.MaxOpenFiles < 0 || k.MaxMemoryMiB < 0 {
			return nc, fmt.Errorf("home: [connections]: negative limit")
		}
		setNonZero(&nc.ConnLow, k.Low)
		setNonZero(&nc.ConnHigh, k.High)
		setNonZero(&nc.MaxFDs, k.MaxOpenFiles)
		if k.MaxMemoryMiB > 0 {
			nc.MaxMemory = int64(k.MaxMemoryMiB) << 20
		}
		if nc.ConnLow >= nc.ConnHigh {
			return nc, fmt.Errorf("home: [connections]: low (%d) must be below high (%d)", nc.ConnLow, nc.ConnHigh)
		}
	}
	nc.Listen = c.Listen
	nc.Bootstrap = c.Bootstrap
	nc.MDNS = c.MDNS
	nc.RelayService = c.RelayService
	return nc, nil
}
