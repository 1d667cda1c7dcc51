package packaging

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/edgerelay/edgerelay/packaging/image"
)

// ImageTargets are the targets the container image carries, in Targets' order.
func ImageTargets() []Target {
	var out []Target
	for _, t := range Targets {
		if t.Image != "" {
			out = append(out, t)
		}
	}
	return out
}

// ImageBuild is the container image of the binaries (path by target name) of ImageTargets.
func ImageBuild(v Versions, created time.Time, bins map[string]string) (image.Build, error) {
	b := image.Build{Tag: v.Image, Created: created}
	for _, t := range ImageTargets() {
		path, ok := bins[t.Name]
		if !ok {
			return b, fmt.Errorf("image: no %s binary", t.Name)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return b, err
		}
		arch, variant, _ := strings.Cut(t.Image, "/")
		b.Platforms = append(b.Platforms, image.Platform{Architecture: arch, Variant: variant, Binary: data})
	}
	return b, nil
}

// ImageFileName names the image archive.
func ImageFileName(v Versions) string { return image.Name + "-" + v.Image + ".tar" }
