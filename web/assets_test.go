package web

import (
	"bytes"
	"compress/gzip"
	"flag"
	"io"
	"net/http"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite assets/*.gz from the files beside them")

// The embedded .gz files are the assets as they are in the repository; -update makes them.
func TestAssetsCompressedAreCurrent(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "app.css"} {
		src, err := os.ReadFile("assets/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
			zw.Write(src)
			zw.Close()
			if err := os.WriteFile("assets/"+name+".gz", b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		gz, err := os.ReadFile("assets/" + name + ".gz")
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatalf("assets/%s.gz: %v", name, err)
		}
		if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, src) {
			t.Errorf("assets/%s.gz is not assets/%s (%v): run go test ./web -run TestAssets -update", name, name, err)
		}
		t.Logf("%s: %d bytes, %d gzipped", name, len(src), len(gz))
	}
}

// A browser gets the files compressed; a client that does not take gzip gets them plain.
func TestAssetsServed(t *testing.T) {
	s := newTestServer(t, Options{})
	const src = "127.0.0.1:2000"
	want, _ := os.ReadFile("assets/app.css")
	for _, enc := range []string{"gzip, deflate, br", ""} {
		r := do(s, "GET", "/app.css", src, "", map[string]string{"Accept-Encoding": enc})
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(zr)
		} else if enc != "" {
			t.Errorf("Accept-Encoding %q: not compressed", enc)
		}
		if r.StatusCode != http.StatusOK || !bytes.Equal(body, want) || r.Header.Get("Content-Type") != "text/css; charset=utf-8" {
			t.Errorf("Accept-Encoding %q: %s %q, %d bytes", enc, r.Status, r.Header.Get("Content-Type"), len(body))
		}
	}
}
