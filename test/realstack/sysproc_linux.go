package realstack

import "syscall"

// sysProcAttr makes the kernel kill a child when the test binary dies (a panic or `go test -timeout`
// would otherwise leave etcd, kube-apiserver and istiod running and holding their ports).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
