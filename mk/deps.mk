# make deps: installs (Debian, root) the packages in mk/deps.list and the Go
# modules; fast and silent when all is present. lab, lab-up, test, bench and
# bench-smoke depend on it, so the README's two commands are the whole set-up.
.PHONY: deps
deps:
	@GO=$(GO) bash mk/deps.sh
