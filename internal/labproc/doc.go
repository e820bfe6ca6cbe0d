// Package labproc holds what the programs that drive a lab (internal/netlab)
// share: starting daemons inside its namespaces so that they never outlive
// the program (Start), test servers and dials inside a namespace
// (Servers, Dial), scraping and parsing Prometheus expositions (Scrape,
// Sum, Series), parsing ss(8) output (ParseSS, ParseSSAddr), and polling
// (WaitFor, Sleep). `make bench` (bench/), `make lab`'s demo
// (internal/labdemo) and the end-to-end tests (test/e2e) use it.
//
// The parsers are pure and tested without root; the rest needs the lab's
// namespaces and is Linux-only.
package labproc
