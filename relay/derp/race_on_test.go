//go:build race

package derp

// raceEnabled: the race detector's shadow memory inflates allocation counts.
const raceEnabled = true
