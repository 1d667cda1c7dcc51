package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNotifyKeys: the notify section and its webhooks, from YAML and from UCI `config
// webhook` sections; every problem names its key and line, and never a token in a URL.
func TestNotifyKeys(t *testing.T) {
	yaml := `notify:
  webhooks:
    - url: "ftp://api.example.net/botSECRET/sendMessage"
      events: [address_changed, cert_expired]
      body: '{"text": "{{mesage}}"}'
      headers: ["Authorization Bearer x"]
      timeout: 500ms
    - events: [part_failing]
`
	_, err := Parse([]byte(yaml), false)
	want := []string{
		"line 3: notify.webhooks[0].url: expected an http(s) URL with a host, got ftp://api.example.net/…",
		`line 4: notify.webhooks[0].events[1]: "cert_expired" is not one of address_changed,`,
		"line 5: notify.webhooks[0].body: unknown placeholder {{mesage}}",
		`line 6: notify.webhooks[0].headers[0]: expected "Name: value"`,
		"line 7: notify.webhooks[0].timeout: must be between 1s and 5m",
		"line 8: notify.webhooks[1].url: required",
	}
	if err == nil {
		t.Fatal("no problems found")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%s", w, err)
		}
	}
	if strings.Contains(err.Error(), "SECRET") {
		t.Errorf("a problem shows the URL's token:\n%s", err)
	}

	uciBad := "config webhook\n\toption url 'https://example.net/hook'\n\tlist events 'record_updated'\n\tlist events 'nope'\n\toption colour 'red'\n"
	_, err = Parse([]byte(uciBad), true)
	for _, w := range []string{`line 4: notify.webhooks[0].events[1]: "nope" is not one of`, "line 5: webhook.colour: unknown option (known: body, events, headers, timeout, url, url_file)"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("missing %q in:\n%v", w, err)
		}
	}

	tokenFile := filepath.Join(t.TempDir(), "bark.url")
	os.WriteFile(tokenFile, []byte("https://api.day.app/KEY\n"), 0o600)
	uci := `config webhook 'telegram'
	option url 'https://api.telegram.org/bot1:x/sendMessage'
	option body '{"chat_id": 1, "text": "{{message}}"}'
	list events 'address_changed'
	list events 'cert_failing'
	option timeout '30'
config webhook
	option url_file '` + tokenFile + `'
	list headers 'X-Test: 1'
`
	cfg, err := Parse([]byte(uci), true)
	if err != nil {
		t.Fatal(err)
	}
	w := cfg.Notify.Webhooks
	if len(w) != 2 || w[0].Events[1] != "cert_failing" || w[0].Timeout != 30*time.Second || !strings.Contains(w[0].Body, "{{message}}") ||
		w[1].URL != "https://api.day.app/KEY" || w[1].Headers[0] != "X-Test: 1" || w[1].Timeout != 10*time.Second {
		t.Fatalf("decoded %+v", w)
	}
	// A notify section turns it off without removing the webhooks.
	cfg, err = Parse([]byte(uci+"config notify\n\toption enabled '0'\n"), true)
	if err != nil || On(cfg.Notify.Enabled, true) {
		t.Fatalf("enabled: %v, %v", err, cfg.Notify.Enabled)
	}
}
