package ddns

import (
	"context"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/edgerelay/edgerelay/relay/stun"
)

// TestAskSTUN asks edgerelay's own STUN server (relay/stun) on loopback.
func TestAskSTUN(t *testing.T) {
	srv, err := stun.Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go srv.Serve(ctx)
	defer srv.Close()
	a, err := askSTUN(ctx, "udp4", srv.Addr().String())
	if err != nil || a != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("askSTUN: %v %v", a, err)
	}
	// Nothing listening: the context bounds the wait.
	short, cancel2 := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel2()
	if _, err := askSTUN(short, "udp4", "127.0.0.1:9"); err == nil {
		t.Error("an answer from a closed port")
	}
}

// stunAnswer builds a Binding success for tx with the given attributes (type, value).
func stunAnswer(typ uint16, tx stunTxID, attrs ...[]byte) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:2], typ)
	binary.BigEndian.PutUint32(b[4:8], stunMagicCookie)
	copy(b[8:], tx[:])
	for i := 0; i+1 < len(attrs); i += 2 {
		h := make([]byte, 4)
		binary.BigEndian.PutUint16(h[0:2], binary.BigEndian.Uint16(attrs[i]))
		binary.BigEndian.PutUint16(h[2:4], uint16(len(attrs[i+1])))
		b = append(append(b, h...), attrs[i+1]...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)-20))
	return b
}

func TestParseSTUNResponse(t *testing.T) {
	tx := stunTxID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	mapped := []byte{0, 1, 0x0d, 0x96, 203, 0, 113, 9}                                           // plain 203.0.113.9:3478
	xored := []byte{0, 1, 0x0d ^ 0x21, 0x96 ^ 0x12, 203 ^ 0x21, 0 ^ 0x12, 113 ^ 0xa4, 10 ^ 0x42} // 203.0.113.10
	at := func(n uint16) []byte { return []byte{byte(n >> 8), byte(n)} }
	for _, tt := range []struct {
		name string
		msg  []byte
		want string // address or error substring
	}{
		{"xor", stunAnswer(stunBindingOK, tx, at(stunAttrXORMappedAddress), xored), "203.0.113.10"},
		{"plain", stunAnswer(stunBindingOK, tx, at(stunAttrMappedAddress), mapped), "203.0.113.9"},
		{"xor preferred", stunAnswer(stunBindingOK, tx, at(stunAttrMappedAddress), mapped, at(stunAttrXORMappedAddress), xored), "203.0.113.10"},
		{"none", stunAnswer(stunBindingOK, tx), "no mapped address"},
		{"error", stunAnswer(stunBindingError, tx, at(stunAttrErrorCode), []byte{0, 0, 4, 0, 'B', 'a', 'd', ' '}), "error 400"},
		{"other tx", stunAnswer(stunBindingOK, stunTxID{9}, at(stunAttrXORMappedAddress), xored), "not an answer"},
		{"short", []byte{1, 1, 0}, "not a STUN message"},
		{"truncated attr", stunAnswer(stunBindingOK, tx, at(stunAttrXORMappedAddress), xored)[:30], "length"},
	} {
		a, err := parseSTUNResponse(tt.msg, tx)
		got := a.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// FuzzParseSTUNResponse: answers from the network never crash the parser, and an accepted
// answer always carries a valid address.
func FuzzParseSTUNResponse(f *testing.F) {
	tx := stunTxID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	f.Add(stunAnswer(stunBindingOK, tx, []byte{0, 0x20}, []byte{0, 1, 0x2c, 0x84, 0xea, 0x12, 0xd5, 0x48}))
	f.Add(stunAnswer(stunBindingOK, tx, []byte{0, 0x20}, make([]byte, 20)))
	f.Add(stunAnswer(stunBindingError, tx, []byte{0, 9}, []byte{0, 0, 4, 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseSTUNResponse(b, tx)
		if err == nil && !a.IsValid() {
			t.Fatalf("accepted %x without an address", b)
		}
	})
}
