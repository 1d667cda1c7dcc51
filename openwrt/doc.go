// Package openwrt holds the files installed on OpenWrt: the procd init script, the default
// UCI config, uci-defaults, hotplug hooks and the feed Makefile. They are embedded so that
// package builds and tests use exactly the shipped bytes.
package openwrt
