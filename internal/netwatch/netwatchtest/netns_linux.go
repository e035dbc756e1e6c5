package netwatchtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Require skips tb unless it runs as root with the ip command (iproute2).
// Under CI=true it fails instead: CI runs as root, and a skip there would
// hide a broken test.
func Require(tb testing.TB) {
	tb.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root for network namespaces"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs the ip command (iproute2)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s; under CI=true this test must run", why)
	}
	tb.Skip(why)
}

// Netns is a network namespace that lives as long as its test.
type Netns struct {
	// Name is the namespace's name, unique to this process and test.
	Name string
	tb   testing.TB
}

// New creates a namespace with its loopback up; it is deleted, with the
// links inside it, when the test ends. New calls Require.
func New(tb testing.TB) *Netns {
	tb.Helper()
	Require(tb)
	var b [4]byte
	rand.Read(b[:])
	n := &Netns{Name: fmt.Sprintf("sekisho-%d-%s", os.Getpid(), hex.EncodeToString(b[:])), tb: tb}
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", n.Name, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
		}
	})
	n.IP("link", "set", "lo", "up")
	return n
}

// IP runs "ip args..." inside the namespace and fails the test on error.
func (n *Netns) IP(args ...string) {
	n.tb.Helper()
	if err := n.TryIP(args...); err != nil {
		n.tb.Fatal(err)
	}
}

// TryIP runs "ip args..." inside the namespace.
func (n *Netns) TryIP(args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s %s: %v: %s", n.Name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Batch runs several ip commands, one a line, in one ip process: as close
// together as the kernel lets them be.
func (n *Netns) Batch(lines ...string) error {
	cmd := exec.Command("ip", "-n", n.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -n %s -batch: %v: %s", n.Name, err, bytes.TrimSpace(out))
	}
	return nil
}

// Do runs f on an OS thread that has entered the namespace: the sockets f
// opens belong to it, and keep belonging to it when used from elsewhere.
// f must not rely on goroutines it starts being inside.
func (n *Netns) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, left inside the namespace, ends with
		// this goroutine instead of going back to the scheduler.
		runtime.LockOSThread()
		ns, err := os.Open(filepath.Join("/run/netns", n.Name))
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Command returns a command that runs inside the namespace (ip netns
// exec): a whole process, all of whose sockets belong to it.
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Veth links namespace n to namespace peer with a veth pair: name inside
// n, peerName inside peer, both up.
func (n *Netns) Veth(name string, peer *Netns, peerName string) {
	n.tb.Helper()
	n.IP("link", "add", name, "type", "veth", "peer", "name", peerName, "netns", peer.Name)
	n.IP("link", "set", name, "up")
	peer.IP("link", "set", peerName, "up")
}
