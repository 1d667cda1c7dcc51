package packaging

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/types/key"

	"github.com/edgerelay/edgerelay"
	"github.com/edgerelay/edgerelay/agent/testenv"
	"github.com/edgerelay/edgerelay/packaging/image"
	"github.com/edgerelay/edgerelay/relay/derptest"
)

// imageCache is the image archive built once per test run from the shared cross builds.
var imageCache struct {
	once  sync.Once
	path  string
	build image.Build
	err   error
}

// imageArchive returns the archive `make image` writes, for testVersion, and what it holds.
func imageArchive(t *testing.T) (string, image.Build) {
	t.Helper()
	bins := crossBinaries(t)
	imageCache.once.Do(func() {
		v := testVersions(t)
		b, err := ImageBuild(v, testEpoch, bins)
		if err != nil {
			imageCache.err = err
			return
		}
		idx, err := b.Index()
		if err != nil {
			imageCache.err = err
			return
		}
		var out bytes.Buffer
		if err := image.WriteArchive(&out, idx, b.Tag, b.Created); err != nil {
			imageCache.err = err
			return
		}
		imageCache.path, imageCache.build = filepath.Join(buildCache.dir, ImageFileName(v)), b
		imageCache.err = os.WriteFile(imageCache.path, out.Bytes(), 0o644)
	})
	if imageCache.err != nil {
		t.Fatal(imageCache.err)
	}
	return imageCache.path, imageCache.build
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// startLogged starts a server for the rest of the test; its output is shown if the test fails.
func startLogged(t *testing.T, what, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s log:\n%s", what, logs.String())
		}
	})
}

// waitListening waits until something accepts TCP connections on the loopback port.
func waitListening(t *testing.T, port int, what string) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, what+" listening on "+strconv.Itoa(port), func() bool {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// platformArgs selects one platform of the index for skopeo.
func platformArgs(p image.Platform) []string {
	args := []string{"--override-os", "linux", "--override-arch", p.Architecture}
	if p.Variant != "" {
		args = append(args, "--override-variant", p.Variant)
	}
	return args
}

// TestImageSkopeoInspect reads the archive back with skopeo: the index lists every image
// platform; each image's config says entrypoint, command, user, ports, env, volume, health
// check and license; and the docker-archive view (docker load without the containerd store)
// has one image per platform under its own tag.
func TestImageSkopeoInspect(t *testing.T) {
	skopeo := testenv.RequireCommand(t, "skopeo")
	archive, b := imageArchive(t)
	ref := "oci-archive:" + archive

	var idx struct {
		MediaType string
		Manifests []struct {
			Platform struct{ OS, Architecture, Variant string }
		}
	}
	if err := json.Unmarshal(run(t, skopeo, "inspect", "--raw", ref), &idx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range idx.Manifests {
		got = append(got, strings.TrimSuffix(m.Platform.OS+"/"+m.Platform.Architecture+"/"+m.Platform.Variant, "/"))
	}
	for _, want := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7"} {
		if !slices.Contains(got, want) {
			t.Errorf("index platforms %v lack %s", got, want)
		}
	}
	if idx.MediaType != "application/vnd.oci.image.index.v1+json" || len(got) != len(b.Platforms) {
		t.Errorf("index %s with %v, want an OCI index of %d platforms", idx.MediaType, got, len(b.Platforms))
	}

	wantPorts := []string{"12345/tcp", "3478/udp", strconv.Itoa(edgerelay.WebPort) + "/tcp"}
	for _, p := range b.Platforms {
		var cfg struct {
			Architecture, Variant, OS string
			Config                    struct {
				User         string
				Entrypoint   []string
				Cmd          []string
				Env          []string
				ExposedPorts map[string]struct{}
				Volumes      map[string]struct{}
				Labels       map[string]string
				Healthcheck  struct{ Test []string }
			}
		}
		raw := run(t, skopeo, append(append([]string{"inspect"}, platformArgs(p)...), "--config", "--raw", ref)...)
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		c := cfg.Config
		var ports []string
		for p := range c.ExposedPorts {
			ports = append(ports, p)
		}
		slices.Sort(ports)
		slices.Sort(wantPorts)
		switch {
		case cfg.Architecture != p.Architecture || cfg.Variant != p.Variant || cfg.OS != "linux":
			t.Errorf("%s: config for %s/%s/%s", p.Suffix(), cfg.OS, cfg.Architecture, cfg.Variant)
		case c.User != fmt.Sprintf("%d:%d", image.UID, image.GID) || c.User == "0:0":
			t.Errorf("%s: user %q, want the non-root %d", p.Suffix(), c.User, image.UID)
		case !slices.Equal(c.Entrypoint, []string{image.BinaryPath}) || !slices.Equal(c.Cmd, []string{"run", "-c", image.ConfigPath}):
			t.Errorf("%s: entrypoint %q cmd %q", p.Suffix(), c.Entrypoint, c.Cmd)
		case !slices.Equal(ports, wantPorts):
			t.Errorf("%s: ports %v, want %v", p.Suffix(), ports, wantPorts)
		case !slices.Contains(c.Env, "SSL_CERT_FILE="+image.CAFile) || !slices.Contains(c.Env, "EDGERELAY_STATE_DIR="+image.StateDir):
			t.Errorf("%s: env %q", p.Suffix(), c.Env)
		case len(c.Volumes) != 1 || c.Volumes[image.VarDir] != struct{}{}:
			t.Errorf("%s: volumes %v", p.Suffix(), c.Volumes)
		case !slices.Equal(c.Healthcheck.Test, image.HealthCheck):
			t.Errorf("%s: health check %q", p.Suffix(), c.Healthcheck.Test)
		case c.Labels["org.opencontainers.image.licenses"] != edgerelay.LicenseID || c.Labels["org.opencontainers.image.version"] != b.Tag:
			t.Errorf("%s: labels %v", p.Suffix(), c.Labels)
		}

		// The same image through manifest.json, as classic docker load reads it.
		var d struct{ Architecture, Os string }
		tag := image.Name + ":" + b.Tag + "-" + p.Suffix()
		if err := json.Unmarshal(run(t, skopeo, "inspect", "docker-archive:"+archive+":"+tag), &d); err != nil {
			t.Fatal(err)
		}
		if d.Architecture != p.Architecture || d.Os != "linux" {
			t.Errorf("docker-archive %s: %+v", tag, d)
		}
	}
}

// TestImageUnpacked unpacks each platform's image with umoci (after skopeo picks it out of
// the index) and checks the root filesystem: the binary is that platform's, `version` and a
// `check` of the default config run from the unpacked root as the image's user (under
// qemu-user for foreign CPUs), and the CA roots, volume, license and user are in place.
func TestImageUnpacked(t *testing.T) {
	testenv.RequireRoot(t)
	skopeo := testenv.RequireCommand(t, "skopeo")
	umoci := testenv.RequireCommand(t, "umoci")
	chroot := testenv.RequireCommand(t, "chroot")
	archive, b := imageArchive(t)
	targets := ImageTargets()
	for i, p := range b.Platforms {
		tg := targets[i]
		dir := t.TempDir()
		layout := filepath.Join(dir, "layout")
		run(t, skopeo, append(append([]string{"copy", "--quiet"}, platformArgs(p)...), "oci-archive:"+archive, "oci:"+layout+":"+p.Suffix())...)
		bundle := filepath.Join(dir, "bundle")
		run(t, umoci, "unpack", "--image", layout+":"+p.Suffix(), bundle)
		root := filepath.Join(bundle, "rootfs")

		checkELF(t, tg, filepath.Join(root, image.BinaryPath))
		// The binary runs from the unpacked root (chroot), as the image's user; foreign CPUs
		// through the qemu-user binary copied into the root.
		argv := []string{"--userspec", fmt.Sprintf("%d:%d", image.UID, image.GID), root}
		if tg.GOARCH != runtimeArch() {
			qemu := testenv.RequireCommand(t, elfWant[tg.Name].qemu)
			data, err := os.ReadFile(qemu)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "qemu"), data, 0o755); err != nil {
				t.Fatal(err)
			}
			argv = append(argv, "/qemu")
		}
		argv = append(argv, image.BinaryPath)
		out := string(run(t, chroot, append(argv, "version")...))
		if !strings.HasPrefix(out, "edgerelay "+testVersion+" (") || !strings.Contains(out, "linux/"+tg.GOARCH) {
			t.Errorf("%s: version in the unpacked root: %q", p.Suffix(), out)
		}
		run(t, chroot, append(argv, "check", "-c", image.ConfigPath)...)

		for path, want := range map[string]struct {
			mode     fs.FileMode
			uid, gid int
		}{
			image.VarDir:      {fs.ModeDir | 0o700, image.UID, image.GID},
			"/tmp":            {fs.ModeDir | fs.ModeSticky | 0o777, 0, 0},
			image.BinaryPath:  {0o755, 0, 0},
			image.ConfigPath:  {0o644, 0, 0},
			image.LicensePath: {0o644, 0, 0},
		} {
			fi, err := os.Lstat(filepath.Join(root, path))
			if err != nil {
				t.Errorf("%s: %v", p.Suffix(), err)
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode() != want.mode || int(st.Uid) != want.uid || int(st.Gid) != want.gid {
				t.Errorf("%s: %s is %v %d:%d, want %v %d:%d", p.Suffix(), path, fi.Mode(), st.Uid, st.Gid, want.mode, want.uid, want.gid)
			}
		}
		if lic, _ := os.ReadFile(filepath.Join(root, image.LicensePath)); !bytes.Equal(lic, edgerelay.License) {
			t.Errorf("%s: %s is not the LICENSE file", p.Suffix(), image.LicensePath)
		}
		if passwd, _ := os.ReadFile(filepath.Join(root, "/etc/passwd")); !strings.Contains(string(passwd), fmt.Sprintf("%s:x:%d:%d:", image.UserName, image.UID, image.GID)) {
			t.Errorf("%s: /etc/passwd:\n%s", p.Suffix(), passwd)
		}
		if i == 0 {
			checkCABundle(t, filepath.Join(root, image.CAFile))
		}
	}
}

// checkCABundle: the roots file parses as PEM certificates a TLS client can use.
func checkCABundle(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil || !c.IsCA {
			t.Fatalf("CA bundle entry %d: %v", len(names), err)
		}
		names = append(names, c.Subject.CommonName)
	}
	// Let's Encrypt's root: ACME and most DNS APIs are reached through it.
	if len(names) < 100 || !slices.Contains(names, "ISRG Root X1") {
		t.Errorf("CA bundle: %d roots: %q", len(names), names)
	}
	t.Logf("CA bundle: %d roots, %d bytes", len(names), len(data))
}

// podman runs podman with its storage, locks and state under dir, so the host's container
// storage is never touched; containers default to the host's network namespace, so podman
// never sets up a bridge, firewall rules or forwarding on the host (its default network
// does). containers.conf is also what runs containers on these machines:
// runc (crun refuses the hybrid cgroup v1+v2 mounts here), cgroupfs, and rlimits no higher
// than the sandbox's (podman's default nofile of 1048576 needs CAP_SYS_RESOURCE, which the
// sandbox drops; nproc above 32768 fails the same way).
func podman(t *testing.T, dir string, args ...string) ([]byte, error) {
	t.Helper()
	pm := testenv.RequireCommand(t, "podman")
	testenv.RequireCommand(t, "runc")
	conf := filepath.Join(dir, "containers.conf")
	if _, err := os.Stat(conf); err != nil {
		files := map[string]string{
			conf: fmt.Sprintf("[containers]\nnetns = \"host\"\ndefault_ulimits = [\"nofile=16384:16384\", \"nproc=4096:4096\"]\n"+
				"[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"+
				"lock_type = \"file\"\ntmp_dir = %q\n", filepath.Join(dir, "tmp")),
			filepath.Join(dir, "storage.conf"): fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
				filepath.Join(dir, "root"), filepath.Join(dir, "run")),
		}
		for p, data := range files {
			if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd := exec.Command(pm, args...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf, "CONTAINERS_STORAGE_CONF="+filepath.Join(dir, "storage.conf"))
	return cmd.CombinedOutput()
}

// removeCgroup removes an empty cgroup directory tree, children first.
func removeCgroup(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			removeCgroup(filepath.Join(dir, e.Name()))
		}
	}
	os.Remove(dir)
}

// TestImagePodman loads the archive with podman and runs the relay from it (host network,
// loopback ports): two Tailscale clients relay packets through the container, the health
// check command answers inside it, and SIGTERM stops it cleanly.
func TestImagePodman(t *testing.T) {
	testenv.RequireRoot(t)
	archive, b := imageArchive(t)
	dir := t.TempDir()
	pm := func(args ...string) string {
		t.Helper()
		out, err := podman(t, dir, args...)
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// The container's cgroups go under a parent of this test's own, removed at the end.
	cgroupParent := "/edgerelay-test-" + filepath.Base(filepath.Dir(dir))
	t.Cleanup(func() {
		podman(t, dir, "rm", "--all", "--force")
		parents, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent)
		more, _ := filepath.Glob("/sys/fs/cgroup" + cgroupParent)
		for _, p := range append(parents, more...) {
			removeCgroup(p)
		}
	})
	ref := "docker.io/library/" + image.Name + ":" + b.Tag
	if out := pm("load", "--input", archive); !strings.Contains(out, "Loaded image: "+ref) {
		t.Fatalf("podman load:\n%s", out)
	}
	var inspect []struct {
		Architecture string
		Config       struct {
			User         string
			ExposedPorts map[string]struct{}
		}
	}
	if err := json.Unmarshal([]byte(pm("image", "inspect", ref)), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("podman image inspect: %v", err)
	}
	if inspect[0].Architecture != runtimeArch() || inspect[0].Config.User != fmt.Sprintf("%d:%d", image.UID, image.GID) ||
		len(inspect[0].Config.ExposedPorts) != 3 {
		t.Errorf("podman loaded %+v", inspect[0])
	}

	// The relay in the container: a config and a state directory from the host.
	derpPort, stunPort := testenv.FreePort(t, "tcp"), testenv.FreePort(t, "udp")
	a, c := key.NewNode(), key.NewNode()
	cfg := fmt.Sprintf("state_dir: %s\nrelay:\n  hostname: 127.0.0.1\n  listen: 127.0.0.1:%d\n  stun_listen: 127.0.0.1:%d\n"+
		"  region: {id: 951, code: ctr, name: Container}\n  tls: {mode: self-signed}\n  verify_clients:\n    allow: [%s, %s]\n",
		image.StateDir, derpPort, stunPort, a.Public().String(), c.Public().String())
	cfgFile, state := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "var")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, image.UID, image.GID); err != nil {
		t.Fatal(err)
	}
	pm("run", "--detach", "--name", "relay", "--network", "host", "--cgroup-parent", cgroupParent, "--volume", cfgFile+":"+image.ConfigPath+":ro", "--volume", state+":"+image.VarDir, ref)
	defer func() {
		if t.Failed() {
			out, _ := podman(t, dir, "logs", "relay")
			t.Logf("container log:\n%s", out)
		}
	}()
	waitListening(t, derpPort, "the relay in the container")
	var dm tailcfg.DERPMap
	if out := pm("exec", "relay", image.BinaryPath, "derpmap", "-c", image.ConfigPath, "--format", "json"); json.Unmarshal([]byte(out), &dm) != nil || dm.Regions[951] == nil {
		t.Fatalf("derpmap in the container:\n%s", out)
	}
	pa, pc := derptest.Connect(t, dm.Regions[951], a), derptest.Connect(t, dm.Regions[951], c)
	for i, n := range []int{1, 1200, 65536} {
		pa.Send(pc.Pub(), derptest.Pattern(n, byte(i)))
		pc.ExpectPacket(pa.Pub(), derptest.Pattern(n, byte(i)))
		pc.Send(pa.Pub(), derptest.Pattern(n, byte(i+50)))
		pa.ExpectPacket(pc.Pub(), derptest.Pattern(n, byte(i+50)))
	}
	// The image's health check, run as the engine runs it.
	if out := pm(append([]string{"exec", "relay"}, image.HealthCheck[1:]...)...); !strings.Contains(out, fmt.Sprintf("relay: 127.0.0.1:%d", derpPort)) {
		t.Errorf("health check output:\n%s", out)
	}
	pm("stop", "--time", "20", "relay")
	if code := strings.TrimSpace(pm("inspect", "--format", "{{.State.ExitCode}}", "relay")); code != "0" {
		t.Errorf("exit code %s after SIGTERM", code)
	}
	if _, err := os.Stat(filepath.Join(state, "state", "derp.key")); err != nil {
		t.Errorf("the state volume lacks the server key: %v", err)
	}
}

// TestImageReproducible: the same binaries and date give the same image, digest for digest.
func TestImageReproducible(t *testing.T) {
	archive, b := imageArchive(t)
	idx, err := b.Index()
	if err != nil {
		t.Fatal(err)
	}
	again, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	var index struct{ Manifests []struct{ Digest string } }
	if err := json.Unmarshal(run(t, "tar", "-xOf", archive, "index.json"), &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v", err)
	}
	if index.Manifests[0].Digest != again.String() {
		t.Errorf("second build: %s, archive: %s", again, index.Manifests[0].Digest)
	}
}

// TestImagePushWithSkopeo pushes the archive as the README says (skopeo copy --all) to a
// registry, Docker's distribution on loopback, and reads it back: the same index, byte for
// byte, and every platform's image.
func TestImagePushWithSkopeo(t *testing.T) {
	skopeo := testenv.RequireCommand(t, "skopeo")
	registry := testenv.RequireCommand(t, "docker-registry")
	archive, b := imageArchive(t)
	dir := t.TempDir()
	port := testenv.FreePort(t, "tcp")
	cfg := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog: {level: warn}\n"+
		"storage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: \"127.0.0.1:%d\"}\n", filepath.Join(dir, "data"), port)), 0o644); err != nil {
		t.Fatal(err)
	}
	startLogged(t, "registry", registry, "serve", cfg)
	waitListening(t, port, "the registry")
	dest := fmt.Sprintf("docker://127.0.0.1:%d/you/edgerelay:%s", port, b.Tag)
	run(t, skopeo, "copy", "--quiet", "--all", "--dest-tls-verify=false", "oci-archive:"+archive, dest)
	if pushed, local := run(t, skopeo, "inspect", "--raw", "--tls-verify=false", dest), run(t, skopeo, "inspect", "--raw", "oci-archive:"+archive); !bytes.Equal(pushed, local) {
		t.Errorf("the registry holds another index:\n%s\nwant:\n%s", pushed, local)
	}
	for _, p := range b.Platforms {
		var d struct{ Architecture, Os string }
		if err := json.Unmarshal(run(t, skopeo, append(append([]string{"inspect", "--tls-verify=false"}, platformArgs(p)...), dest)...), &d); err != nil {
			t.Fatal(err)
		}
		if d.Architecture != p.Architecture || d.Os != "linux" {
			t.Errorf("%s from the registry: %+v", p.Suffix(), d)
		}
	}
}

// TestShippedBinaryLeavesBuildToolsOut: the image builder (go-containerregistry, the CA
// bundle) and the test-only Tailscale code are not part of the shipped binary.
func TestShippedBinaryLeavesBuildToolsOut(t *testing.T) {
	goBin := testenv.RequireCommand(t, "go")
	cmd := exec.Command(goBin, "list", "-deps", MainPackage)
	cmd.Dir = moduleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/google/go-containerregistry", "golang.org/x/crypto/x509roots", "tailscale.com", "github.com/edgerelay/edgerelay/packaging"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("the shipped binary imports %s", dep)
			}
		}
	}
}
