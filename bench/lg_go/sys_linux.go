package main

import (
	"syscall"
	"unsafe"
)

// epollWait and readRaw go to the kernel without telling the Go scheduler (RawSyscall):
// the loop is the process's only goroutine, so there is nothing to hand its P to while it
// waits, and the hand-offs (a futex wake and a thread switch per blocking wait) cost more
// than the reads. A signal (the scheduler's preemption, the GC's) interrupts the wait with
// EINTR, which the loop takes as an empty wait. The sockets are non-blocking and stdin is
// read only when epoll says it is readable: neither read blocks.
func epollWait(ep int, events []syscall.EpollEvent, msec int) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(ep),
		uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), uintptr(msec), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func readRaw(fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd),
		uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
