package openwrt

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/edgerelay/edgerelay/agent/config"
	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/ddns/provider"
	"github.com/edgerelay/edgerelay/notify"
)

// luciForm is what testdata/luci-stub.js reports of the view it ran.
type luciForm struct {
	Map      string   `json:"map"`
	Exec     []string `json:"exec"`
	Sections []struct {
		Kind    string `json:"kind"`
		Name    string `json:"name"`
		Type    string `json:"type"`
		Options []struct {
			Widget      string              `json:"widget"`
			Name        string              `json:"name"`
			Values      []string            `json:"values"`
			DependsOn   []map[string]string `json:"dependsOn"`
			Placeholder string              `json:"placeholder"`
			Default     string              `json:"default"`
			Datatype    string              `json:"datatype"`
		} `json:"options"`
	} `json:"sections"`
}

// runLuCIView runs the shipped view under node with stand-ins for LuCI's client API.
func runLuCIView(t *testing.T) luciForm {
	t.Helper()
	node := testenv.RequireCommand(t, "node")
	out, err := exec.Command(node, "testdata/luci-stub.js", "luci-app-edgerelay/htdocs/luci-static/resources/view/edgerelay.js").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("running the view: %v\n%s", err, stderr)
	}
	var f luciForm
	if err := json.Unmarshal(out, &f); err != nil {
		t.Fatalf("view report: %v\n%s", err, out)
	}
	return f
}

// TestLuCIViewWritesWhatTheDaemonReads: every section and option the LuCI form can write is
// one the daemon's UCI decoder knows, every choice offered is one it accepts, and the
// commands the page runs are exactly those the rpcd ACL allows.
func TestLuCIViewWritesWhatTheDaemonReads(t *testing.T) {
	f := runLuCIView(t)
	if f.Map != "edgerelay" {
		t.Fatalf("the form edits /etc/config/%s", f.Map)
	}

	// One UCI file setting every option the form has, one line each, so the decoder's
	// problems point at form options by line.
	var uci strings.Builder
	lines := map[int]string{}
	line := 0
	emit := func(format string, a ...any) {
		fmt.Fprintf(&uci, format+"\n", a...)
		line++
	}
	for _, s := range f.Sections {
		if s.Kind == "NamedSection" {
			emit("config %s '%s'", s.Type, s.Name)
		} else {
			emit("config %s", s.Type)
		}
		for _, o := range s.Options {
			v := o.Placeholder
			switch {
			case o.Widget == "Flag":
				v = "1"
			case o.Widget == "ListValue" || o.Widget == "MultiValue":
				v = o.Values[len(o.Values)-1]
			case v == "":
				v = "x"
			}
			kw := "option"
			if o.Widget == "DynamicList" {
				kw = "list"
			}
			emit("\t%s %s '%s'", kw, o.Name, v)
			lines[line] = s.Type + "." + o.Name
		}
	}
	_, err := config.Parse([]byte(uci.String()), true)
	var probs config.Problems
	if err != nil && !asProblems(err, &probs) {
		t.Fatalf("parsing the form's UCI: %v\n%s", err, uci.String())
	}
	for _, p := range probs {
		if strings.Contains(p.Msg, "unknown") {
			t.Errorf("the form writes something the daemon does not know: %s (form option %s)", p, lines[p.Line])
		}
	}

	// Every choice offered is accepted: set each one alone (with what it depends on) and look
	// for the decoder's "not one of" problem about it.
	for _, s := range f.Sections {
		for _, o := range s.Options {
			for _, v := range o.Values {
				if v == "" {
					continue
				}
				src := "config " + s.Type
				if s.Name != "" {
					src += " '" + s.Name + "'"
				}
				src += "\n"
				if len(o.DependsOn) > 0 {
					for k, dv := range o.DependsOn[0] {
						src += "\toption " + k + " '" + dv + "'\n"
					}
				}
				src += "\toption " + o.Name + " '" + v + "'\n"
				_, err := config.Parse([]byte(src), true)
				if err != nil && strings.Contains(err.Error(), fmt.Sprintf("%q is not one of", v)) {
					t.Errorf("%s.%s offers %q, which the daemon refuses:\n%v", s.Type, o.Name, v, err)
				}
			}
		}
	}
	// Choices that mirror a daemon list offer all of it, no more, no fewer.
	mirrors := map[string][]string{"provider_type": provider.Types, "key_alg": provider.TSIGAlgorithms, "events": notify.KindNames()}
	for _, s := range f.Sections {
		for _, o := range s.Options {
			for suffix, want := range mirrors {
				if !strings.HasSuffix(o.Name, suffix) {
					continue
				}
				got := slices.DeleteFunc(slices.Clone(o.Values), func(v string) bool { return v == "" })
				slices.Sort(got)
				want = slices.Sorted(slices.Values(want))
				if !slices.Equal(got, want) {
					t.Errorf("%s.%s offers %v, the daemon has %v", s.Type, o.Name, got, want)
				}
			}
		}
	}

	// Datatypes name only LuCI's validators: an unknown one makes LuCI raise "Unhandled
	// token" and the page does not render.
	ident := regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
	for _, s := range f.Sections {
		for _, o := range s.Options {
			for _, tok := range ident.FindAllString(o.Datatype, -1) {
				if !slices.Contains(luciValidators, tok) {
					t.Errorf("%s.%s: datatype %q uses %q, which LuCI does not have", s.Type, o.Name, o.Datatype, tok)
				}
			}
		}
	}

	// The sections are the ones the shipped default config has (NamedSections render only
	// sections that exist).
	def := string(DefaultConfig)
	for _, s := range f.Sections {
		if s.Kind == "NamedSection" && !strings.Contains(def, fmt.Sprintf("config %s '%s'", s.Type, s.Name)) {
			t.Errorf("the form edits section %s '%s', which the default config does not have", s.Type, s.Name)
		}
	}

	// What the page runs is what the ACL allows, and nothing more is allowed.
	var acl map[string]struct {
		Read struct {
			UBus map[string][]string `json:"ubus"`
			File map[string][]string `json:"file"`
			UCI  []string            `json:"uci"`
		} `json:"read"`
		Write struct {
			UCI []string `json:"uci"`
		} `json:"write"`
	}
	if err := json.Unmarshal(LuCIACL, &acl); err != nil {
		t.Fatalf("ACL: %v", err)
	}
	grant, ok := acl[LuCIPackage]
	if !ok {
		t.Fatalf("the ACL does not define %s", LuCIPackage)
	}
	var allowed []string
	for cmd, perms := range grant.Read.File {
		if slices.Contains(perms, "exec") {
			allowed = append(allowed, cmd)
		}
	}
	slices.Sort(allowed)
	ran := slices.Sorted(slices.Values(f.Exec))
	if !slices.Equal(ran, allowed) {
		t.Errorf("the page runs %q, the ACL allows %q", ran, allowed)
	}
	for _, cmd := range ran {
		if !strings.HasPrefix(cmd, BinaryPath+" ") {
			t.Errorf("the page runs %q, not the installed daemon", cmd)
		}
	}
	if !slices.Contains(grant.Read.UBus["file"], "exec") {
		t.Error("the ACL does not grant ubus file exec, which fs.exec needs")
	}
	if !slices.Equal(grant.Read.UCI, []string{"edgerelay"}) || !slices.Equal(grant.Write.UCI, []string{"edgerelay"}) {
		t.Errorf("the ACL's uci grants are read %v, write %v", grant.Read.UCI, grant.Write.UCI)
	}

	// The menu entry opens this view and needs this ACL.
	var menu map[string]struct {
		Action struct {
			Type string `json:"type"`
			Path string `json:"path"`
		} `json:"action"`
		Depends struct {
			ACL []string `json:"acl"`
		} `json:"depends"`
	}
	if err := json.Unmarshal(LuCIMenu, &menu); err != nil {
		t.Fatalf("menu: %v", err)
	}
	entry, ok := menu["admin/services/edgerelay"]
	if !ok || entry.Action.Type != "view" || entry.Action.Path != "edgerelay" ||
		!slices.Equal(entry.Depends.ACL, []string{LuCIPackage}) {
		t.Errorf("menu entry: %+v", menu)
	}
	for _, f := range LuCIInstall() {
		if strings.HasSuffix(f.Path, "/view/"+entry.Action.Path+".js") {
			return
		}
	}
	t.Errorf("the menu opens view %q, which the package does not install", entry.Action.Path)
}

// luciValidators are the datatype names LuCI's validation.js defines.
var luciValidators = strings.Fields(`integer uinteger float ufloat ipaddr ip4addr ip6addr ip4prefix
	ip6prefix cidr cidr4 cidr6 ipnet4 ipnet6 ip6hostid ipmask ipmask4 ipmask6 port portrange macaddr
	host hostname network hostport ip4addrport ipaddrport wpakey wepkey uciname range min max length
	rangelength minlength maxlength or and neg list phonedigit timehhmmss dateyyyymmdd unique
	hexstring hex base64 string directory file device`)

func asProblems(err error, probs *config.Problems) bool {
	p, ok := err.(config.Problems)
	if ok {
		*probs = p
	}
	return ok
}
