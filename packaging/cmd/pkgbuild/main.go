// Command pkgbuild cross-compiles edgerelay for every target and builds the OpenWrt .ipk
// and .apk and the Synology .spk packages and the container image from the binaries. The
// Makefile's cross, package, size and image targets call it.
//
//	pkgbuild -version V [-dist dist] cross     static, stripped binaries in dist/bin
//	pkgbuild -version V [-dist dist] package   the binaries plus every package
//	pkgbuild -version V [-dist dist] size      each binary's size and gzip -9 size; fails
//	                                           when linux/mipsle softfloat is over 10 MiB
//	pkgbuild -version V [-dist dist] image     the multi-platform container image archive
//	pkgbuild -version V -o FILE build          one binary for this machine (make build)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/edgerelay/edgerelay/openwrt"
	"github.com/edgerelay/edgerelay/packaging"
	"github.com/edgerelay/edgerelay/packaging/image"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pkgbuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", "", "version to stamp (git describe output, e.g. v1.2.3-4-gabcdef0)")
	dist := fs.String("dist", "dist", "output directory")
	only := fs.String("targets", "", "comma-separated target names to build (default: all)")
	out := fs.String("o", "bin/edgerelay", "build: the output file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version == "" || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: pkgbuild -version V [-dist DIR] [-targets a,b] [-o FILE] cross|package|size|image|build")
		return 2
	}
	vers, err := packaging.ParseVersion(*version)
	if err != nil {
		fmt.Fprintln(stderr, "pkgbuild:", err)
		return 2
	}
	targets, err := pick(*only)
	if err != nil {
		fmt.Fprintln(stderr, "pkgbuild:", err)
		return 2
	}
	if fs.Arg(0) == "image" {
		targets = packaging.ImageTargets() // the image has all its platforms or none
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if fs.Arg(0) == "build" {
		if err := buildNative(ctx, *out, vers.Binary); err != nil {
			fmt.Fprintln(stderr, "pkgbuild:", err)
			return 1
		}
		return 0
	}

	bins, err := cross(ctx, *dist, targets, vers.Binary, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "pkgbuild:", err)
		return 1
	}
	switch fs.Arg(0) {
	case "cross":
		return 0
	case "size":
		return size(targets, bins, stdout)
	case "package":
		if err := packageAll(*dist, targets, bins, vers, stdout); err != nil {
			fmt.Fprintln(stderr, "pkgbuild:", err)
			return 1
		}
		return 0
	case "image":
		if err := writeImage(*dist, bins, vers, stdout); err != nil {
			fmt.Fprintln(stderr, "pkgbuild:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "pkgbuild: unknown command %q (cross, package, size, image, build)\n", fs.Arg(0))
	return 2
}

// buildNative builds the binary for this machine with the shipped flags.
func buildNative(ctx context.Context, out, version string) error {
	args := append(append([]string{"build"}, packaging.BuildFlags(version)...), "-o", out, packaging.MainPackage)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

func pick(only string) ([]packaging.Target, error) {
	if only == "" {
		return packaging.Targets, nil
	}
	var out []packaging.Target
	for _, name := range strings.Split(only, ",") {
		found := false
		for _, t := range packaging.Targets {
			if t.Name == name {
				out, found = append(out, t), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown target %q", name)
		}
	}
	return out, nil
}

// cross builds every target's binary into dist/bin and returns their paths by target name.
func cross(ctx context.Context, dist string, targets []packaging.Target, version string, stdout io.Writer) (map[string]string, error) {
	dir := filepath.Join(dist, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go command is not on PATH: %w", err)
	}
	// Build from the module root whatever the working directory.
	gomod, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return nil, fmt.Errorf("not inside the edgerelay module (go env GOMOD: %v)", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	bins := map[string]string{}
	for _, t := range targets {
		out, err := filepath.Abs(filepath.Join(dir, packaging.BinaryName(t)))
		if err != nil {
			return nil, err
		}
		start := time.Now()
		if err := packaging.CrossBuild(ctx, goBin, root, packaging.MainPackage, t, version, out); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "built %s (%s)\n", out, time.Since(start).Round(time.Millisecond))
		bins[t.Name] = out
	}
	// Which binary serves which package architecture, for people picking a file by hand.
	var m strings.Builder
	for _, t := range targets {
		fmt.Fprintf(&m, "%s\t%s\topenwrt: %s\tsynology: %s\n", packaging.BinaryName(t),
			strings.Join(t.Env()[2:], " "), strings.Join(t.OpenWrt, " "), strings.Join(t.Synology, " "))
	}
	if err := os.WriteFile(filepath.Join(dir, "TARGETS"), []byte(m.String()), 0o644); err != nil {
		return nil, err
	}
	return bins, nil
}

// size prints each binary's size and its gzip -9 size (what the packages carry and what a
// compressing overlay stores), and fails when the budget target is over SizeBudget.
func size(targets []packaging.Target, bins map[string]string, stdout io.Writer) int {
	status := 0
	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	fmt.Fprintf(stdout, "%-32s %10s %9s %10s %9s\n", "binary", "bytes", "MiB", "gzip -9", "MiB")
	for _, t := range targets {
		fi, err := os.Stat(bins[t.Name])
		if err != nil {
			fmt.Fprintln(stdout, err)
			return 1
		}
		gz, err := gzipSize(bins[t.Name])
		if err != nil {
			fmt.Fprintln(stdout, err)
			return 1
		}
		n := fi.Size()
		note := ""
		if t.Name == packaging.SizeBudgetTarget {
			if n > packaging.SizeBudget {
				note, status = fmt.Sprintf("  OVER the %d-byte budget by %d", packaging.SizeBudget, n-packaging.SizeBudget), 1
			} else {
				note = fmt.Sprintf("  budget %d: %d bytes to spare", packaging.SizeBudget, packaging.SizeBudget-n)
			}
		}
		fmt.Fprintf(stdout, "%-32s %10d %9.2f %10d %9.2f%s\n", packaging.BinaryName(t), n, mib(n), gz, mib(gz), note)
	}
	return status
}

// gzipSize is the length of `gzip -9 -n` of the file: GNU gzip itself (Essential on
// Debian), as people measure it; Go's deflate at level 9 comes out about 1.5 % larger.
func gzipSize(path string) (int64, error) {
	var n countWriter
	var stderr strings.Builder
	cmd := exec.Command("gzip", "-9", "-n", "-c", path)
	cmd.Stdout, cmd.Stderr = &n, &stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("gzip -9 %s: %v %s", path, err, stderr.String())
	}
	return int64(n), nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// sourceDateEpoch is every file's mtime in the packages: $SOURCE_DATE_EPOCH, else the last
// commit's time, so the same commit gives the same packages.
func sourceDateEpoch() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0)
		}
	}
	if out, err := exec.Command("git", "log", "-1", "--format=%ct").Output(); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil {
			return time.Unix(n, 0)
		}
	}
	return time.Now().Truncate(time.Second)
}

func packageAll(dist string, targets []packaging.Target, bins map[string]string, v packaging.Versions, stdout io.Writer) error {
	epoch := sourceDateEpoch()
	var mu sync.Mutex // guards stdout
	write := func(p string, data []byte) error {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
		mu.Lock()
		fmt.Fprintf(stdout, "wrote %s (%d bytes)\n", p, len(data))
		mu.Unlock()
		return nil
	}
	// Compression dominates; one target per CPU at a time.
	sem := make(chan struct{}, runtime.NumCPU())
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = packageTarget(dist, t, bins[t.Name], v, epoch, write)
		}()
	}
	wg.Wait()
	return errors.Join(append(errs, packageLuCI(dist, v, epoch, write))...)
}

// packageLuCI writes the arch-independent LuCI app once, in dist/openwrt/all.
func packageLuCI(dist string, v packaging.Versions, epoch time.Time, write func(string, []byte) error) error {
	dir := filepath.Join(dist, "openwrt", "all")
	ipk, err := packaging.BuildLuCIIPK(v.OpenWrt, epoch)
	if err != nil {
		return err
	}
	if err := write(filepath.Join(dir, packaging.IPKFileName(openwrt.LuCIPackage, v.OpenWrt, "all")), ipk); err != nil {
		return err
	}
	apk, err := packaging.BuildLuCIAPK(v.OpenWrt, epoch)
	if err != nil {
		return err
	}
	return write(filepath.Join(dir, packaging.APKFileName(openwrt.LuCIPackage, v.OpenWrt)), apk)
}

func packageTarget(dist string, t packaging.Target, binPath string, v packaging.Versions, epoch time.Time, write func(string, []byte) error) error {
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return err
	}
	for _, arch := range t.OpenWrt {
		b := packaging.OpenWrtBuild{Version: v.OpenWrt, Arch: arch, Binary: bin, SourceDateEpoch: epoch}
		ipk, err := packaging.BuildOpenWrtIPK(b)
		if err != nil {
			return err
		}
		dir := filepath.Join(dist, "openwrt", arch)
		if err := write(filepath.Join(dir, packaging.IPKFileName("edgerelay", v.OpenWrt, arch)), ipk); err != nil {
			return err
		}
		apk, err := packaging.BuildOpenWrtAPK(b)
		if err != nil {
			return err
		}
		if err := write(filepath.Join(dir, packaging.APKFileName("edgerelay", v.OpenWrt)), apk); err != nil {
			return err
		}
	}
	if len(t.Synology) > 0 {
		spk, err := packaging.BuildSPK(packaging.SPKBuild{Version: v.DSM, Arch: t.Synology, Binary: bin, SourceDateEpoch: epoch})
		if err != nil {
			return err
		}
		return write(filepath.Join(dist, "synology", packaging.SPKFileName(v.DSM, t.SynologyName)), spk)
	}
	return nil
}

// writeImage writes the container image archive to dist/image.
func writeImage(dist string, bins map[string]string, v packaging.Versions, stdout io.Writer) error {
	b, err := packaging.ImageBuild(v, sourceDateEpoch(), bins)
	if err != nil {
		return err
	}
	idx, err := b.Index()
	if err != nil {
		return err
	}
	p := filepath.Join(dist, "image", packaging.ImageFileName(v))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.Create(p + ".tmp")
	if err != nil {
		return err
	}
	err = image.WriteArchive(f, idx, b.Tag, b.Created)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p+".tmp", p)
	}
	if err != nil {
		os.Remove(p + ".tmp")
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %s:%s for", p, image.Name, b.Tag)
	for _, pl := range b.Platforms {
		fmt.Fprintf(stdout, " linux/%s", strings.TrimSuffix(pl.Architecture+"/"+pl.Variant, "/"))
	}
	fmt.Fprintln(stdout)
	return nil
}
