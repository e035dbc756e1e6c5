package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

// sdNotify tells systemd about the service's state (Type=notify units):
// READY=1 once serving, RELOADING=1 during a reload, STOPPING=1 when
// draining. Without NOTIFY_SOCKET it does nothing.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte(state))
}

// sdReloading is the RELOADING message systemd's notify-reload wants.
func sdReloading() string {
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec())
}
