module github.com/edgerelay/edgerelay

go 1.26.5

require (
	golang.org/x/crypto v0.58.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
	tailscale.com v1.102.0 // indirect
)
