package packaging

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"math"
	"path"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay"
	"github.com/edgerelay/edgerelay/packaging/synology"
)

// SPKBuild is one Synology package: the binary for one DSM CPU family.
type SPKBuild struct {
	Version         string   // DSM form: 1.2.3-4 (the last number is the build and must grow)
	Arch            []string // DSM family and platform names for INFO's arch
	Binary          []byte
	SourceDateEpoch time.Time
}

// DSM 7.0 GA is build 40000; DSM 7 refuses older os_min_ver for third-party packages.
const dsmMinVersion = "7.0-40000"

// spkInfoKeys is INFO's key order as written (DSM reads it as a key="value" file).
var spkInfoKeys = []string{
	"package", "version", "os_min_ver", "displayname", "description", "arch", "maintainer",
	"maintainer_url", "distributor", "distributor_url", "support_url", "thirdparty", "ctl_stop",
	"silent_upgrade", "checkport", "dsmuidir", "dsmappname", "extractsize", "create_time",
}

// BuildSPK makes a DSM 7 .spk: an uncompressed tar of INFO, LICENSE (Package Center shows it
// before installing), the icons, conf/, package.tgz (installed to
// /var/packages/edgerelay/target, the license text in share/) and scripts/.
func BuildSPK(b SPKBuild) ([]byte, error) {
	if len(b.Arch) == 0 || b.Version == "" || b.SourceDateEpoch.IsZero() {
		return nil, fmt.Errorf("spk: arch, version and SourceDateEpoch are required")
	}
	read := func(p string) ([]byte, error) {
		data, err := fs.ReadFile(synology.Files, p)
		if err != nil {
			return nil, fmt.Errorf("spk: %w", err)
		}
		return data, nil
	}
	sc, err := read("edgerelay.sc")
	if err != nil {
		return nil, err
	}
	cfg, err := read("config.yaml")
	if err != nil {
		return nil, err
	}

	// package.tgz: the target directory.
	target := NewTree()
	if err := target.AddFile("/bin/edgerelay", 0o755, b.Binary); err != nil {
		return nil, err
	}
	if err := target.AddFile("/conf/edgerelay.sc", 0o644, sc); err != nil {
		return nil, err
	}
	if err := target.AddFile("/share/config.yaml", 0o644, cfg); err != nil {
		return nil, err
	}
	if err := target.AddFile("/share/LICENSE", 0o644, edgerelay.License); err != nil {
		return nil, err
	}
	// The DSM desktop shortcut to the web page (INFO's dsmuidir names the directory).
	uiConfig, err := read("ui/config")
	if err != nil {
		return nil, err
	}
	if err := target.AddFile("/ui/config", 0o644, uiConfig); err != nil {
		return nil, err
	}
	for _, n := range synology.UIIconSizes {
		icon, err := Icon(n)
		if err != nil {
			return nil, err
		}
		if err := target.AddFile(fmt.Sprintf("/ui/images/edgerelay_%d.png", n), 0o644, icon); err != nil {
			return nil, err
		}
	}
	inner := newGNUTar(b.SourceDateEpoch)
	extract := 0
	for _, e := range target.Walk() {
		if e.Path == "/" {
			continue
		}
		name := strings.TrimPrefix(e.Path, "/")
		if e.IsDir() {
			err = inner.Dir(name+"/", e.Mode)
		} else {
			err = inner.File(name, e.Mode, e.Data)
			extract += len(e.Data)
		}
		if err != nil {
			return nil, fmt.Errorf("spk: package.tgz: %w", err)
		}
	}
	pkgTgz, err := gzipN(inner.Bytes())
	if err != nil {
		return nil, err
	}

	icon64, err := Icon(64)
	if err != nil {
		return nil, err
	}
	icon256, err := Icon(256)
	if err != nil {
		return nil, err
	}

	info := map[string]string{
		"package":         "edgerelay",
		"version":         b.Version,
		"os_min_ver":      dsmMinVersion,
		"displayname":     "edgerelay",
		"description":     "Self-hosted Tailscale DERP relay and STUN server, with DDNS and Let's Encrypt certificates by DNS-01.",
		"arch":            strings.Join(b.Arch, " "),
		"maintainer":      edgerelay.Maintainer,
		"maintainer_url":  edgerelay.URL,
		"distributor":     edgerelay.Maintainer,
		"distributor_url": edgerelay.URL,
		"support_url":     edgerelay.URL + "/issues",
		"thirdparty":      "yes",
		"ctl_stop":        "yes",
		"silent_upgrade":  "yes",
		"checkport":       "yes",
		"dsmuidir":        "ui",
		"dsmappname":      "com.edgerelay.web",
		"extractsize":     fmt.Sprint((extract + 1023) / 1024),
		"create_time":     b.SourceDateEpoch.UTC().Format("20060102-15:04:05"),
	}
	var infoText strings.Builder
	for _, k := range spkInfoKeys {
		fmt.Fprintf(&infoText, "%s=%q\n", k, info[k])
	}

	w := newGNUTar(b.SourceDateEpoch)
	add := func(name string, mode fs.FileMode, data []byte) {
		if err == nil {
			err = w.File(name, mode, data)
		}
	}
	add("INFO", 0o644, []byte(infoText.String()))
	add("LICENSE", 0o644, edgerelay.License)
	add("PACKAGE_ICON.PNG", 0o644, icon64)
	add("PACKAGE_ICON_256.PNG", 0o644, icon256)
	add("edgerelay.sc", 0o644, sc)
	if err == nil {
		err = w.Dir("conf/", 0o755)
	}
	for _, c := range []string{"conf/privilege", "conf/resource"} {
		data, rerr := read(c)
		if rerr != nil {
			return nil, rerr
		}
		add(c, 0o644, data)
	}
	add("package.tgz", 0o644, pkgTgz)
	if err == nil {
		err = w.Dir("scripts/", 0o755)
	}
	for _, s := range synology.Scripts {
		data, rerr := read(path.Join("scripts", s))
		if rerr != nil {
			return nil, rerr
		}
		add("scripts/"+s, 0o755, data)
	}
	if err != nil {
		return nil, fmt.Errorf("spk: %w", err)
	}
	return w.Bytes(), nil
}

// SPKFileName names a package for one DSM family.
func SPKFileName(version, family string) string {
	return "edgerelay-" + family + "-" + version + ".spk"
}

// Icon draws the package icon at size×size: a relay mark (a node with two arcs each side)
// on a rounded square. Drawn at build time so no binary asset lives in the repository.
func Icon(size int) ([]byte, error) {
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	bg := color.NRGBA{0x1f, 0x3a, 0x5f, 0xff}
	fg := color.NRGBA{0xf2, 0xf5, 0xf8, 0xff}
	s := float64(size)
	radius := s * 0.18
	for y := 0; y < size; y++ {
		for x := 0; x < size; x++ {
			px, py := float64(x)+0.5, float64(y)+0.5
			// Rounded square mask.
			dx := math.Max(math.Max(radius-px, px-(s-radius)), 0)
			dy := math.Max(math.Max(radius-py, py-(s-radius)), 0)
			if dx*dx+dy*dy > radius*radius {
				continue
			}
			c := bg
			cx, cy := px-s/2, py-s/2
			d := math.Hypot(cx, cy) / s
			side := math.Abs(cx) > math.Abs(cy)*1.2 // arcs open left and right
			switch {
			case d < 0.09:
				c = fg
			case side && ((d > 0.19 && d < 0.25) || (d > 0.33 && d < 0.39)):
				c = fg
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
