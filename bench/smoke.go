package main

import (
	"errors"
	"fmt"
)

// smokeCheck is what CI's bench-smoke asserts of a report: for every
// system run, figure 1 has a download with non-zero goodput and, for every
// system but hybridgw-bond (figure 1 only), figure 2 has TTFB runs with a
// non-zero median. It says nothing about the values: a smoke run is too
// short to measure, it only proves the harness and the systems still work.
func smokeCheck(r *Report, systems []string) error {
	var errs []error
	for _, s := range systems {
		if s == "" {
			continue
		}
		ok := false
		for _, e := range r.Efficiency {
			if e.System == s && e.GoodputMbps > 0 {
				ok = true
			}
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no figure 1 download with non-zero goodput", s))
		}
		if s == sysBond {
			continue
		}
		ok = false
		for _, e := range r.TTFB {
			if e.System == s && e.Runs > 0 && e.MedianMs > 0 {
				ok = true
			}
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no figure 2 TTFB entries", s))
		}
	}
	if len(errs) > 0 && len(r.Errors) > 0 {
		errs = append(errs, fmt.Errorf("the run's own errors: %v", r.Errors))
	}
	return errors.Join(errs...)
}
