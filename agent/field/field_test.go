package field

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

func TestProblemsKeysAndMerge(t *testing.T) {
	var verify Problems
	verify.Add(Index("allow", 1), "expected a node key, got %q", "x")
	var relay Problems
	relay.HostPort("listen", "nope")
	relay.OneOf("tls.mode", "letsencrypt", "acme", "manual")
	relay.Merge("verify_clients", verify.Err())
	relay.Merge("mesh", errors.New("plain error"))
	got := relay.Prefix("relay")
	want := Problems{
		{"relay.listen", `expected host:port or :port, got "nope"`},
		{"relay.tls.mode", `"letsencrypt" is not one of acme, manual`},
		{"relay.verify_clients.allow[1]", `expected a node key, got "x"`},
		{"relay.mesh", "plain error"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	var ps Problems
	if ps.Err() != nil {
		t.Fatal("no problems is an error")
	}
	if err := fmt.Errorf("wrapped: %w", relay.Err()); !errors.As(err, &ps) || len(ps) != 4 {
		t.Fatalf("errors.As: %v", ps)
	}
	if Join("routes", "[0]") != "routes[0]" || Join("", "x") != "x" || Join("x", "") != "x" {
		t.Fatal("Join")
	}
}

func TestChecks(t *testing.T) {
	for s, want := range map[string]bool{
		"derp.example.com": true, "derp.example.com.": true, "192.0.2.1": true, "2001:db8::1": true,
		"_acme-challenge.x": true, "-bad.example": false, "a..b": false, "": false, "has space": false,
	} {
		if IsHost(s) != want {
			t.Errorf("IsHost(%q) = %v", s, !want)
		}
	}
	for n, want := range map[string]bool{"br-lan": true, "eth0.2": true, "": false, "..": false,
		"a/b": false, "sixteen-chars-xx": false, `a"b`: false} {
		if IsIfName(n) != want {
			t.Errorf("IsIfName(%q) = %v", n, !want)
		}
	}
	var ps Problems
	ps.HostPort("a", ":99999")
	ps.HostPort("b", "bad host:1")
	ps.HostPort("c", "[::1]:53")
	if len(ps) != 2 || ps[0].Key != "a" || ps[1].Key != "b" {
		t.Fatalf("HostPort: %q", ps)
	}
	if !IsURL("https://h/x", "https") || IsURL("http://h", "https") || IsURL("https:///x", "https") {
		t.Fatal("IsURL")
	}
}
