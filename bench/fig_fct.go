package main

import (
	"fmt"
	"strings"
)

// Figure 8, flow completion time: how long a short download takes from
// the client's connect to its last byte. Short flows are most of what a
// user waits for; a warm, already-joined MPTCP connection should bond even
// a 1 MB download from its first byte.

// fctSizes are the download sizes of figure 8.
var fctSizes = []int{10 << 10, 100 << 10, 1 << 20, 10 << 20}

// FCTRow is figure 8 for one system and size.
type FCTRow struct {
	System   string  `json:"system"`
	Bytes    int     `json:"bytes"`
	Runs     int     `json:"runs"`
	Failures int     `json:"failures"`
	MedianMs float64 `json:"median_ms"`
	P90Ms    float64 `json:"p90_ms"`
	Err      string  `json:"error,omitempty"`
}

func sizeLabel(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d MB", n>>20)
	default:
		return fmt.Sprintf("%d KB", n>>10)
	}
}

// renderFCT writes figure 8's section.
func renderFCT(b *strings.Builder, rows []FCTRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(b, "\n## 8. Flow completion time (connect → last byte of a download, default pair)\n\n")
	t := newTable(b, "size", "system", "runs", "failures", "median ms", "p90 ms")
	for _, size := range fctSizes {
		for _, e := range rows {
			if e.Bytes == size {
				t.row(sizeLabel(size), e.System, fmt.Sprint(e.Runs), fmt.Sprint(e.Failures), f1(e.MedianMs), f1(e.P90Ms)+errCell(e.Err))
			}
		}
	}
	fmt.Fprintf(b, "\nSequential downloads, one connection each, sizes interleaved; direct uses DSL only. The client closes after the last byte.\n\n")
}
