// Package image builds edgerelay's multi-platform container image from the cross-built
// binaries, without a container engine (go-containerregistry): the static binary on an empty
// base with CA roots, a default config, a non-root user, a state volume, the relay, STUN and
// web ports, and a health check; written as one archive that podman, docker and skopeo load.
package image

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/edgerelay/edgerelay"
	"github.com/edgerelay/edgerelay/agent/config"
)

// Name is the image's repository name in the archive (docker.io/library/edgerelay once loaded).
const Name = "edgerelay"

// Platform is one image of the index: an OCI platform and the binary built for it.
type Platform struct {
	Architecture string // GOARCH spelling: amd64, arm64, arm, riscv64
	Variant      string // arm: v6, v7
	Binary       []byte
}

// Suffix labels the platform in per-platform tags: amd64, armv7.
func (p Platform) Suffix() string { return p.Architecture + p.Variant }

// Build is one image to make.
type Build struct {
	Tag       string    // the version tag, e.g. 1.2.3
	Created   time.Time // every timestamp in the image (SOURCE_DATE_EPOCH)
	Platforms []Platform
}

// HealthCheck is the command the engine runs to see the daemon answer.
var HealthCheck = []string{"CMD", BinaryPath, "status", "-c", ConfigPath}

// Index makes the multi-platform image index. The base layer (roots, config, user, license)
// is the same for every platform; the binary is a layer of its own.
func (b Build) Index() (v1.ImageIndex, error) {
	if len(b.Platforms) == 0 || b.Tag == "" || b.Created.IsZero() {
		return nil, fmt.Errorf("image: platforms, tag and created time are required")
	}
	cfgYAML, err := DefaultConfig()
	if err != nil {
		return nil, err
	}
	ports, err := exposedPorts(cfgYAML)
	if err != nil {
		return nil, err
	}
	base, err := layer(baseFiles(cfgYAML), b.Created)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range b.Platforms {
		bin, err := layer(binaryFiles(p.Binary), b.Created)
		if err != nil {
			return nil, err
		}
		img, err := b.image(p, ports, base, bin)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", p.Suffix(), err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: p.Architecture, Variant: p.Variant},
		}})
	}
	return idx, nil
}

func (b Build) image(p Platform, ports map[string]struct{}, layers ...v1.Layer) (v1.Image, error) {
	created := v1.Time{Time: b.Created.UTC()}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: p.Architecture, Variant: p.Variant, OS: "linux", Created: created,
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{
			User:       strconv.Itoa(UID) + ":" + strconv.Itoa(GID),
			Entrypoint: []string{BinaryPath},
			Cmd:        []string{"run", "-c", ConfigPath},
			Env: []string{
				"PATH=/usr/bin",
				"SSL_CERT_FILE=" + CAFile,
				// For a mounted config without state_dir: the volume, not $HOME.
				"EDGERELAY_STATE_DIR=" + StateDir,
			},
			ExposedPorts: ports,
			Volumes:      map[string]struct{}{VarDir: {}},
			WorkingDir:   VarDir,
			StopSignal:   "SIGTERM",
			Healthcheck: &v1.HealthConfig{
				Test: HealthCheck, Interval: 30 * time.Second, Timeout: 10 * time.Second,
				StartPeriod: 30 * time.Second, Retries: 3,
			},
			Labels: map[string]string{
				"org.opencontainers.image.title":       "edgerelay",
				"org.opencontainers.image.description": "Self-hosted Tailscale DERP relay and STUN server, with DDNS and Let's Encrypt certificates by DNS-01",
				"org.opencontainers.image.version":     b.Tag,
				"org.opencontainers.image.licenses":    edgerelay.LicenseID,
				"org.opencontainers.image.source":      edgerelay.URL,
				"org.opencontainers.image.url":         edgerelay.URL,
				"org.opencontainers.image.vendor":      edgerelay.Maintainer,
			},
		},
	})
	if err != nil {
		return nil, err
	}
	why := []string{"CA roots, default config, user, license", "edgerelay " + b.Tag}
	for i, l := range layers {
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, History: v1.History{
			Created: created, CreatedBy: "edgerelay pkgbuild image", Comment: why[i],
		}})
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

// exposedPorts are the relay's (TCP) and STUN's (UDP) ports of the default config, and the
// web page's.
func exposedPorts(cfgYAML []byte) (map[string]struct{}, error) {
	cfg, err := config.Parse(cfgYAML, false)
	if err != nil {
		return nil, fmt.Errorf("image: default config: %w", err)
	}
	ports := map[string]struct{}{strconv.Itoa(edgerelay.WebPort) + "/tcp": {}}
	add := func(addr, proto string) error {
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("image: default config: %q: %w", addr, err)
		}
		ports[port+"/"+proto] = struct{}{}
		return nil
	}
	if err := add(cfg.Relay.Listen, "tcp"); err != nil {
		return nil, err
	}
	if s := cfg.Relay.STUNAddr(); s != "" {
		if err := add(s, "udp"); err != nil {
			return nil, err
		}
	}
	if cfg.Web.Listen != "" {
		if err := add(cfg.Web.Listen, "tcp"); err != nil {
			return nil, err
		}
	}
	return ports, nil
}

// layer makes a gzip-compressed OCI layer of files.
func layer(files []file, mtime time.Time) (v1.Layer, error) {
	data, err := layerTar(files, mtime)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression))
}
