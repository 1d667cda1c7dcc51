package image

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WriteArchive writes idx as one tar that two kinds of loader read:
//   - an OCI image layout (oci-layout, index.json, blobs/sha256/): podman load, skopeo
//     (oci-archive:), docker load with the containerd image store; index.json names the
//     multi-platform index Name:tag, so the engine picks its own platform;
//   - a docker-archive manifest.json over the same blobs, for docker load with the classic
//     image store (Synology's Container Manager, older Docker): one image per platform,
//     tagged Name:tag-<platform> (edgerelay:1.2.3-arm64), since that store has no index.
func WriteArchive(w io.Writer, idx v1.ImageIndex, tag string, mtime time.Time) error {
	a := &archive{tw: tar.NewWriter(w), mtime: mtime, written: map[v1.Hash]bool{}}
	if err := a.file("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime}); err != nil {
			return err
		}
	}
	idxDigest, idxSize, err := a.rawBlob(idx.RawManifest, idx.Digest)
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	type dockerEntry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var docker []dockerEntry
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return err
		}
		e, err := a.image(img)
		if err != nil {
			return err
		}
		p := Platform{Architecture: desc.Platform.Architecture, Variant: desc.Platform.Variant}
		docker = append(docker, dockerEntry{Config: e.config, RepoTags: []string{Name + ":" + tag + "-" + p.Suffix()}, Layers: e.layers})
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2, MediaType: types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIImageIndex, Digest: idxDigest, Size: idxSize,
			Annotations: map[string]string{
				// containerd (docker's containerd store) names the image from the first,
				// podman and skopeo from the second.
				"io.containerd.image.name":          "docker.io/library/" + Name + ":" + tag,
				"org.opencontainers.image.ref.name": Name + ":" + tag,
			},
		}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(docker)
	if err != nil {
		return err
	}
	if err := a.file("index.json", index); err != nil {
		return err
	}
	if err := a.file("manifest.json", manifest); err != nil {
		return err
	}
	return a.tw.Close()
}

type archive struct {
	tw      *tar.Writer
	mtime   time.Time
	written map[v1.Hash]bool
}

func (a *archive) file(name string, data []byte) error {
	if err := a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: a.mtime}); err != nil {
		return err
	}
	_, err := a.tw.Write(data)
	return err
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// rawBlob writes a manifest or config (its bytes and digest from ggcr) once, by digest.
func (a *archive) rawBlob(raw func() ([]byte, error), digest func() (v1.Hash, error)) (v1.Hash, int64, error) {
	data, err := raw()
	if err != nil {
		return v1.Hash{}, 0, err
	}
	h, err := digest()
	if err != nil || a.written[h] {
		return h, int64(len(data)), err
	}
	a.written[h] = true
	return h, int64(len(data)), a.file(blobPath(h), data)
}

type writtenImage struct {
	config string
	layers []string
}

// image writes one platform's manifest, config and layers.
func (a *archive) image(img v1.Image) (writtenImage, error) {
	var out writtenImage
	if _, _, err := a.rawBlob(img.RawManifest, img.Digest); err != nil {
		return out, err
	}
	cd, _, err := a.rawBlob(img.RawConfigFile, img.ConfigName)
	if err != nil {
		return out, err
	}
	out.config = blobPath(cd)
	layers, err := img.Layers()
	if err != nil {
		return out, err
	}
	for _, l := range layers {
		ld, err := l.Digest()
		if err != nil {
			return out, err
		}
		out.layers = append(out.layers, blobPath(ld))
		if a.written[ld] {
			continue
		}
		size, err := l.Size()
		if err != nil {
			return out, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return out, err
		}
		a.written[ld] = true
		err = a.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: blobPath(ld), Mode: 0o644, Size: size, ModTime: a.mtime})
		if err == nil {
			var n int64
			n, err = io.Copy(a.tw, rc)
			if err == nil && n != size {
				err = fmt.Errorf("layer %s: %d bytes, manifest says %d", ld, n, size)
			}
		}
		rc.Close()
		if err != nil {
			return out, err
		}
	}
	return out, nil
}
