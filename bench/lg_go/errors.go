package main

import (
	"strconv"
	"syscall"
)

// errnoName: Python's errno.errorcode[err] (loadgen.py's "connect: ECONNREFUSED").
func errnoName(err error) string {
	e, ok := err.(syscall.Errno)
	if !ok {
		return err.Error()
	}
	if name, ok := errnoNames[e]; ok {
		return name
	}
	return strconv.Itoa(int(e))
}

var errnoNames = map[syscall.Errno]string{
	syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.EINTR: "EINTR",
	syscall.EIO: "EIO", syscall.EBADF: "EBADF", syscall.EAGAIN: "EAGAIN",
	syscall.ENOMEM: "ENOMEM", syscall.EACCES: "EACCES", syscall.EINVAL: "EINVAL",
	syscall.ENFILE: "ENFILE", syscall.EMFILE: "EMFILE", syscall.EPIPE: "EPIPE",
	syscall.ENOBUFS: "ENOBUFS", syscall.EADDRINUSE: "EADDRINUSE",
	syscall.EADDRNOTAVAIL: "EADDRNOTAVAIL", syscall.ENETDOWN: "ENETDOWN",
	syscall.ENETUNREACH: "ENETUNREACH", syscall.ENETRESET: "ENETRESET",
	syscall.ECONNABORTED: "ECONNABORTED", syscall.ECONNRESET: "ECONNRESET",
	syscall.EISCONN: "EISCONN", syscall.ENOTCONN: "ENOTCONN", syscall.ESHUTDOWN: "ESHUTDOWN",
	syscall.ETIMEDOUT: "ETIMEDOUT", syscall.ECONNREFUSED: "ECONNREFUSED",
	syscall.EHOSTDOWN: "EHOSTDOWN", syscall.EHOSTUNREACH: "EHOSTUNREACH",
	syscall.EALREADY: "EALREADY", syscall.EINPROGRESS: "EINPROGRESS",
	syscall.EPROTO: "EPROTO",
}

// exceptionName: the class of the OSError Python raises for err (loadgen.py's close and
// send reasons, e.g. "ConnectionResetError").
func exceptionName(err error) string {
	e, ok := err.(syscall.Errno)
	if !ok {
		return "OSError"
	}
	switch e {
	case syscall.EAGAIN, syscall.EALREADY, syscall.EINPROGRESS:
		return "BlockingIOError"
	case syscall.EPIPE, syscall.ESHUTDOWN:
		return "BrokenPipeError"
	case syscall.ECONNABORTED:
		return "ConnectionAbortedError"
	case syscall.ECONNREFUSED:
		return "ConnectionRefusedError"
	case syscall.ECONNRESET:
		return "ConnectionResetError"
	case syscall.EINTR:
		return "InterruptedError"
	case syscall.EACCES, syscall.EPERM:
		return "PermissionError"
	case syscall.ETIMEDOUT:
		return "TimeoutError"
	}
	return "OSError"
}
