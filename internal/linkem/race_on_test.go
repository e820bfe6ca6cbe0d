//go:build race

package linkem_test

// raceEnabled: the race detector multiplies CPU cost, so CPU budgets are not checked.
const raceEnabled = true
