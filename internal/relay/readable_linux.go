package relay

import "golang.org/x/sys/unix"

// readable is a syscall.RawConn read callback: true once a read on fd
// would not block (data, EOF or a pending error). false makes the runtime
// wait for the next readiness edge, subject to the read deadline. The
// poll, not a read, keeps the wait free of any buffer.
func readable(fd uintptr) bool {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
	for {
		n, err := unix.Poll(pfd, 0)
		if err == unix.EINTR {
			continue
		}
		// On a poll error let the Read find out what is wrong.
		return err != nil || n > 0
	}
}
