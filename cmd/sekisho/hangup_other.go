//go:build !unix

package main

import "os"

// notifyHangup: no SIGHUP here; reload through the admin API.
func notifyHangup(chan<- os.Signal) {}
