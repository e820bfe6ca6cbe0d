//go:build !race

package linkem_test

const raceEnabled = false
