package verify

import (
	"context"
	"testing"
)

// BenchmarkCheck measures one admission per check kind: the allow list, a cached URL
// answer, and a whois over a unix socket (the stand-in; the real tailscaled adds its lookup).
func BenchmarkCheck(b *testing.B) {
	k := randomKey(b)
	ctx := context.Background()
	run := func(b *testing.B, v *Verifier) {
		b.ReportAllocs()
		for b.Loop() {
			if err := v.Check(ctx, k, src1); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("allow", func(b *testing.B) {
		v, _ := New(Config{Allow: []string{NodeKeyString(k)}}, nil)
		run(b, v)
	})
	b.Run("url cached", func(b *testing.B) {
		hs := newAdmissionServer(b)
		hs.register(k, true)
		v, _ := New(Config{URL: hs.URL}, nil)
		run(b, v)
	})
	b.Run("tailscaled whois", func(b *testing.B) {
		l := newLocalAPI(b, "")
		l.add(k, "node")
		v, _ := New(Config{TailscaledSocket: l.socket}, nil)
		run(b, v)
	})
}
