// Package bench measures the figures that matter to sealpost's users and
// reports each next to its limit: a bound computed in the same run from the
// cost of the primitives it is made of, so that the ratio value/limit stays
// meaningful on a noisy, shared machine.
//
// Every runner in the project (crypto here, storage in store/, delivery and
// relays in node/) returns []Figure; `sealpost bench` prints them.
package bench

// Figure is one measured figure. Names are stable snake_case identifiers
// (`ratchet_roundtrip`, `store_batch_write`); units are short strings such as
// "ops/s", "msgs/s", "ms" or "allocs/op".
type Figure struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit"`
	Value float64 `json:"value"`
	// Limit is the bound for Value computed in the same run by the figure's
	// fixed formula; zero when no formula defines one.
	Limit float64 `json:"limit,omitempty"`
	// Ratio is Value/Limit for throughputs (higher is better), or Limit/Value
	// for durations; zero when Limit is zero.
	Ratio float64 `json:"ratio,omitempty"`
}
