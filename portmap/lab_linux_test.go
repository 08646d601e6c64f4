package portmap_test

import "syscall"

const syscall_ECONNREFUSED = syscall.ECONNREFUSED
