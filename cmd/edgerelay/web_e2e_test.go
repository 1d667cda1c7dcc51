package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

// TestWebPageInChromium drives Debian's chromium (headless) against the built daemon's web
// page: a wrong password is refused, the right one shows the dashboard filled from the
// running daemon, a Tailscale client appears when one connects, the DERP map is copied,
// a setting changed on the page lands in the file and the daemon reloads it, a config
// with problems is shown and not written, and a POST without the CSRF token is refused.
// Screenshots go to $EDGERELAY_SCREENSHOTS, else the test's temp dir (logged).
func TestWebPageInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		testenv.Skip(t, "no chromium (Debian package chromium; .ci/install-test-deps installs it)")
	}
	dir := t.TempDir()
	shots := os.Getenv("EDGERELAY_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(dir, "screenshots")
	}
	os.MkdirAll(shots, 0o755)
	derpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "tcp"))
	webAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "tcp"))
	cfgPath := filepath.Join(dir, "config.yaml")
	cfgText := fmt.Sprintf(`# edgerelay for the browser test
state_dir: %s
relay:
  hostname: 127.0.0.1
  listen: %q
  stun_listen: ""
  region: {id: 901, code: test, name: "Test"}   # the page changes the name
  keepalive: 45s
  tls: {mode: self-signed}
web:
  listen: %q
`, filepath.Join(dir, "state"), derpAddr, webAddr)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	const password = "browser-test-pass"
	passwd := exec.Command(binPath, "web", "passwd", "-c", cfgPath)
	passwd.Stdin = strings.NewReader(password + "\n")
	if out, err := passwd.CombinedOutput(); err != nil {
		t.Fatalf("web passwd: %v\n%s", err, out)
	}
	d := startDaemon(t, nil, "-c", cfgPath)
	waitTCP(t, webAddr)
	waitTCP(t, derpAddr)
	if strings.Contains(d.log(), "generated a login password") {
		t.Error("the daemon generated a password although one was set")
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 1600),
		chromedp.UserDataDir(chromiumProfile(t)))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancelT := context.WithTimeout(ctx, 4*time.Minute) // generous: a loaded 2-core machine
	defer cancelT()
	run := func(what string, acts ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(ctx, acts...); err != nil {
			t.Fatalf("%s: %v\ndaemon log:\n%s", what, err, d.log())
		}
	}
	shot := func(name string) {
		t.Helper()
		var png []byte
		run("screenshot "+name, chromedp.FullScreenshot(&png, 100))
		p := filepath.Join(shots, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	base := "http://" + webAddr

	// Not logged in: the page sends the browser to the login form; a wrong password is refused.
	var msg string
	run("wrong password", chromedp.Navigate(base+"/"), chromedp.WaitVisible("#password", chromedp.ByID),
		chromedp.SendKeys("#password", "not-the-password", chromedp.ByID), chromedp.Click("#login", chromedp.ByID),
		chromedp.WaitVisible("#msg", chromedp.ByID), chromedp.Text("#msg", &msg, chromedp.ByID))
	if !strings.Contains(msg, "Wrong password") {
		t.Errorf("after a wrong password the page says %q", msg)
	}
	shot("1-wrong-password")

	// The right one: the dashboard, filled from the running daemon.
	var parts, snippet, peer string
	run("log in", chromedp.SendKeys("#password", password, chromedp.ByID), chromedp.Click("#login", chromedp.ByID),
		chromedp.WaitVisible(`body[data-ready="1"]`, chromedp.ByQuery),
		chromedp.Text("#parts", &parts, chromedp.ByID), chromedp.Text("#snip-tailscale", &snippet, chromedp.ByID),
		chromedp.Text("#peer", &peer, chromedp.ByID))
	if !strings.Contains(parts, "relay") || !strings.Contains(parts, "running") || !strings.Contains(parts, "web") {
		t.Errorf("parts on the page: %q", parts)
	}
	if !strings.Contains(peer, "off") {
		t.Errorf("peer relay card without a peer_relay part: %q", peer)
	}
	if !strings.Contains(snippet, `"RegionID": 901`) || !strings.Contains(snippet, derpAddr[strings.LastIndex(derpAddr, ":")+1:]) {
		t.Errorf("DERP map on the page: %q", snippet)
	}

	// A Tailscale client connects with the map the daemon hands out: the page shows it.
	derptest.Connect(t, derpMap(t, cfgPath).Regions[901], key.NewNode())
	run("client appears", chromedp.Poll(`document.getElementById('relay').textContent.includes('Clients now1')`, nil,
		chromedp.WithPollingTimeout(90*time.Second)))
	shot("2-dashboard-with-client")

	// Copy the DERP map: the daemon records it as handed out.
	var copied string
	run("copy the DERP map", chromedp.Click("#copy-tailscale", chromedp.ByID),
		chromedp.WaitVisible(`body[data-copied="tailscale"]`, chromedp.ByQuery), chromedp.Text("#copy-tailscale", &copied, chromedp.ByID))
	if copied != "Copied" {
		t.Errorf("copy button says %q", copied)
	}

	// A POST without the CSRF token, from the logged-in page itself, is refused.
	var forged int
	run("forged POST", chromedp.Evaluate(`fetch('/api/settings', {method: 'POST', credentials: 'same-origin',
		headers: {'Content-Type': 'application/json'}, body: JSON.stringify({'relay.region.name': 'Forged'})}).then(r => r.status)`,
		&forged, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
	if forged != 403 {
		t.Errorf("POST without the CSRF token: %d, want 403", forged)
	}

	// A config with problems is shown with them and not written.
	before, _ := os.ReadFile(cfgPath)
	var problems string
	run("settings with a problem", chromedp.Click("#tab-settings", chromedp.ByID),
		chromedp.WaitVisible(`#set-relay\.listen`, chromedp.ByQuery),
		chromedp.SetValue(`#set-relay\.listen`, "not-an-address", chromedp.ByQuery), chromedp.Click("#save", chromedp.ByID),
		chromedp.WaitVisible("#problems", chromedp.ByID), chromedp.Text("#problems", &problems, chromedp.ByID))
	if !strings.Contains(problems, "relay.listen") {
		t.Errorf("problems shown: %q", problems)
	}
	if after, _ := os.ReadFile(cfgPath); string(after) != string(before) {
		t.Errorf("a config with problems was written:\n%s", after)
	}
	shot("3-settings-problem")

	// A good change: written to the file (comments and other keys kept), then reloaded.
	run("change the region name", chromedp.SetValue(`#set-relay\.listen`, derpAddr, chromedp.ByQuery),
		chromedp.SetValue(`#set-relay\.region\.name`, "Attic", chromedp.ByQuery), chromedp.Click("#save", chromedp.ByID),
		chromedp.WaitVisible("#reloaded", chromedp.ByID), chromedp.Text("#reloaded", &msg, chromedp.ByID))
	if msg != "Saved and reloaded." {
		t.Errorf("after saving the page says %q", msg)
	}
	after, _ := os.ReadFile(cfgPath)
	for _, want := range []string{`name: "Attic"`, "# the page changes the name", "# edgerelay for the browser test", "keepalive: 45s"} {
		if !strings.Contains(string(after), want) {
			t.Errorf("config file after the change lacks %q:\n%s", want, after)
		}
	}
	shot("4-settings-saved")
	run("the reloaded relay's map", chromedp.Click("#tab-dash", chromedp.ByID),
		chromedp.Poll(`document.getElementById('snip-tailscale').textContent.includes('"RegionName": "Attic"')`, nil,
			chromedp.WithPollingTimeout(90*time.Second)))
	if !strings.Contains(d.log(), "reload: config re-read") {
		t.Errorf("the daemon did not log a reload:\n%s", d.log())
	}
	shot("5-dashboard-after-reload")
}

// chromiumProfile is a profile directory outside t.TempDir: chromium's helper processes (crashpad,
// zygote) may still be writing it after the browser is gone, which made TempDir's cleanup fail the
// test with "directory not empty". It is removed on a best-effort basis.
func chromiumProfile(t *testing.T) string {
	dir, err := os.MkdirTemp("", "edgerelay-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 20 && os.RemoveAll(dir) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	})
	return dir
}
