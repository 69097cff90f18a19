package mailbox_test

import (
	"context"
	"testing"

	"github.com/sealpost/sealpost/node/mailbox"
	"github.com/sealpost/sealpost/node/nodetest"
	"github.com/sealpost/sealpost/node/relay"
	"github.com/sealpost/sealpost/protocol"
	"github.com/sealpost/sealpost/store"
)

// BenchmarkDepositRun prices a depositor key per mailbox and run: warm is
// a deposit on a run's open host (what every deposit was when one key
// served a relay), new_run the first deposit of a run (a key made, a host
// and a connection to the relay set up), forced by writing in turn to two
// mailboxes with room for one host.
func BenchmarkDepositRun(b *testing.B) {
	ctx := context.Background()
	// The relay's defaults but for what one sender depositing back to
	// back reaches: the per-connection rate and the per-token and
	// per-mailbox counts.
	res := relay.DefaultResources()
	res.DepositRate, res.DepositBurst = 1e6, 1e6
	res.TokenMaxCount, res.MailboxMaxCount = 1<<30, 1<<30
	r := nodetest.StartRelay(b, nodetest.RelayOptions{Resources: res})
	boxes := mailboxes(b, r, 2)
	for _, bc := range []struct {
		name  string
		boxes []*protocol.Mailbox
	}{{"warm", boxes[:1]}, {"new_run", boxes}} {
		b.Run(bc.name, func(b *testing.B) {
			st := store.NewMemory()
			defer st.Close()
			dep, err := mailbox.New(ctx, mailbox.Config{Store: st, Options: mailbox.Options{RelayHosts: 1}})
			if err != nil {
				b.Fatal(err)
			}
			defer dep.Close()
			i := 0
			for b.Loop() {
				out, err := dep.Deposit(ctx, bc.boxes[i%len(bc.boxes)], claimed.Public(), claimedDevice, payloads("x"))
				if err != nil || out[0].Err != nil {
					b.Fatalf("deposit: %v %v", err, out)
				}
				i++
			}
		})
	}
}
