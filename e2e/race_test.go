//go:build race

package e2e

// raceEnabled shrinks the largest transfers under the race detector, which
// slows copying ~10×; the full sizes run in the ordinary test run.
const raceEnabled = true
