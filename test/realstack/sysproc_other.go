//go:build !linux

package realstack

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
