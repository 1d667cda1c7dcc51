// Package openwrt holds the files installed on OpenWrt: the procd init script, the default
// UCI config, uci-defaults, hotplug hooks, the feed Makefile, and the LuCI app
// (luci-app-edgerelay/, laid out as luci.mk expects). They are embedded so that package
// builds and tests use exactly the shipped bytes.
package openwrt
