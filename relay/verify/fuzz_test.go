package verify

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
)

// FuzzParseAdmitResponse: any answer bytes are handled without panic, and we accept exactly
// what derper accepts (tailcfg.DERPAdmitClientResponse through a JSON decoder).
func FuzzParseAdmitResponse(f *testing.F) {
	for _, s := range []string{`{"Allow":true}`, `{"Allow":false}`, `{"allow":true} trailing`, `{}`, `null`,
		`{"Allow":"true"}`, `[true]`, ``, ` `, `{"Allow":true`, `{"Allow":1}`, "\xff", `{"Allow":true,"Allow":false}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		allow, err := parseAdmitResponse(bytes.NewReader(b))
		var ref tailcfg.DERPAdmitClientResponse
		refErr := json.NewDecoder(bytes.NewReader(b)).Decode(&ref)
		if (err == nil) != (refErr == nil) || (err == nil && allow != ref.Allow) {
			t.Fatalf("%q: we say (%v, %v), derper's decoding (%v, %v)", b, allow, err, ref.Allow, refErr)
		}
	})
}

// FuzzParseWhoIs: any whois answer is handled without panic and admits only its own key.
func FuzzParseWhoIs(f *testing.F) {
	k := key.NewNode().Public().String()
	f.Add([]byte(`{"Node":{"ID":1,"Key":"`+k+`","Name":"a."},"UserProfile":{}}`), k)
	f.Add([]byte(`{"Node":null}`), k)
	f.Add([]byte(`{"Node":{"Key":1}}`), k)
	f.Add([]byte(`not json`), k)
	f.Add([]byte(``), "")
	f.Fuzz(func(t *testing.T, b []byte, want string) {
		_, err := parseWhoIs(bytes.NewReader(b), want)
		if err != nil {
			return
		}
		var res struct{ Node struct{ Key string } }
		if json.Unmarshal(b, &res) == nil && !strings.EqualFold(res.Node.Key, want) {
			t.Fatalf("%q accepted for %q", b, want)
		}
	})
}

// FuzzParseNodeKey: we accept the node keys Tailscale accepts, and print them as it does.
func FuzzParseNodeKey(f *testing.F) {
	f.Add(key.NewNode().Public().String())
	f.Add("nodekey:" + strings.Repeat("AB", 32))
	f.Add("nodekey:" + strings.Repeat("0", 63))
	f.Add("nodekey:" + strings.Repeat("g", 64))
	f.Add(strings.Repeat("0", 64))
	f.Add("mkey:" + strings.Repeat("0", 64))
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseNodeKey(s)
		var ref key.NodePublic
		refErr := ref.UnmarshalText([]byte(s))
		if (err == nil) != (refErr == nil) {
			t.Fatalf("%q: we say %v, Tailscale says %v", s, err, refErr)
		}
		if err == nil && (k != raw(ref) || NodeKeyString(k) != ref.String()) {
			t.Fatalf("%q: parsed %s, Tailscale %s", s, NodeKeyString(k), ref.String())
		}
	})
}
