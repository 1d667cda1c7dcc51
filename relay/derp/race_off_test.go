//go:build !race

package derp

const raceEnabled = false
