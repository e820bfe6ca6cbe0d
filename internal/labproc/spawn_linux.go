package labproc

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// spawner starts child processes from one OS thread that never exits and
// never changes namespace: a child's Pdeathsig fires when the thread that
// forked it dies, not the process, so a child started from an arbitrary
// Go thread could be killed whenever the runtime retires that thread. One
// per process, started on first use.
var spawner = sync.OnceValue(func() chan<- spawnReq {
	reqs := make(chan spawnReq)
	go func() {
		runtime.LockOSThread() // for the life of the process
		for r := range reqs {
			r.done <- r.cmd.Start()
		}
	}()
	return reqs
})

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

// start starts cmd in its own process group, with SIGTERM as its parent
// death signal, from the spawner's thread.
func start(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	done := make(chan error, 1)
	spawner() <- spawnReq{cmd, done}
	return <-done
}
